"""Implicit negatives: an event with no explicit label ``N`` seconds after its event time
is counted as a negative (fraud: no chargeback after N days is a legitimate transaction).

The monitor reads the domain's events topic a second time (its own consumer, manually
assigned, ``read_committed``), and holds each partition back (paused, its first records
not due yet kept in memory) until its next event is due: event time + ``N`` at most the
*horizon*, the earlier of now and the last time the label reader was caught up with the
labels topic (so a label published before its event fell due has been read before the
event is judged). A due event is counted unless an
explicit label for its id was taken: those ids are kept in Redis, in one hash per hour
of event time, written before the batch that took the labels is stored (a crash in
between leaves an id whose label is read again; never a label without its id), and
deleted an hour past ``N`` behind the last horizon at which the delayed reader had
judged every partition (held, or read to its end): after a stop or a backlog, not
before those events were judged (a week's expiry backs that up).

An explicit label is *late* when labelled (labelled at) more than ``N`` after its event,
or when its event fell due at or before the greatest horizon the delayed reader was
polled with (published after that, whatever its stamp): its event is, or will be, an
implicit negative. It is not taken into the window (one outcome per event, never both)
but counted, per class, as ``implicit_late:<class>``: a late positive is an implicit
negative that was wrong, the measure of an ``N`` set too short.

The delayed reader's offsets (``events:<partition>``) and that greatest horizon
(``events_horizon_ms``) are stored in the same transaction as the batch's window entries
and counts, so a kill -9 neither loses nor double counts, and a restarted monitor judges
the labels it reads again as late or not as the first did.
A monitor with no stored offsets starts where the label reader does
(``auto_offset_reset``): the events whose labels it reads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis
from kafka import TopicPartition

from inferloop.domains import DomainSpec
from inferloop.domains import schemas as s
from inferloop.domains.idhash import id_hash
from inferloop.keys import Keys
from inferloop.monitor.intake import Intake, Taken, subset
from inferloop.monitor.reader import open_consumer
from inferloop.monitor.state import Changes, offset_field
from inferloop.registry.serving import ActiveModel
from inferloop.settings import Settings

log = logging.getLogger(__name__)

EVENTS = "events"
# The offsets hash's field of the greatest horizon the delayed reader was polled with
# (epoch ms) when the batch was stored.
HORIZON_FIELD = "events_horizon_ms"
# A held partition's records are judged again once the horizon is this far past the
# first one's due time, so that a release brings a second of due events, not one.
HOLD_SLACK_S = 1.0
# Label ids are kept this long past the horizon beyond N: events up to an hour out of
# event-time order in their partition still find their label's id.
TRIM_MARGIN_S = 3600.0
POLL_MS = 20
# Labelled ids are kept in one hash per hour of event time; a trim deletes the last
# day's worth of hours behind the horizon, and each hash expires a week after its hour
# fell due (a monitor stopped longer than that may count a labelled event twice).
BUCKET_S = 3600
TRIM_HOURS = 24
BACKSTOP_S = 7 * 24 * 3600.0


@dataclass
class Due:
    """The due events of one read, as a labelled batch of negatives, the offsets after
    them, and the horizon they were judged at (epoch s; 0: no read)."""

    batch: s.LabelledBatch | None = None
    offsets: dict[str, int] = field(default_factory=dict)
    rejects: int = 0
    horizon_s: float = 0.0


def negatives(spec: DomainSpec, events: Sequence[s.Event], after_s: float) -> s.LabelledBatch:
    """``events`` as negatives labelled at their due time."""
    event_s = np.array([e.event_time.timestamp() for e in events], dtype=np.float64)
    return s.LabelledBatch(
        ids=[e.id for e in events],
        event_time_s=event_s,
        labelled_at_s=event_s + after_s,
        y=np.zeros(len(events), dtype=np.int8),
        rows=spec.to_rows(events),
    )


# A turn without the delayed reader.
NOTHING_DUE = Due()


def open_delayed_reader(
    settings: Settings, spec: DomainSpec, topic: str, offsets: Mapping[str, int], after_s: float
) -> DelayedReader:
    """The delayed reader of ``topic``, from the stored offsets on."""
    consumer = open_consumer(settings, {topic: EVENTS}, offsets)
    log.info("reading %s %.0f s behind", topic, after_s)
    return DelayedReader(consumer, spec, after_s)


class DelayedReader:
    """The domain's events topic, each partition held back until its next event is due.

    A held partition is paused with its records not due yet kept in memory (one poll's
    worth at most: it is not fetched again until all of them were judged); they are
    judged again once the first of them is due against the horizon."""

    def __init__(self, consumer: Any, spec: DomainSpec, after_s: float) -> None:
        self.consumer, self.spec, self.after_s = consumer, spec, after_s
        self._held: dict[TopicPartition, float] = {}  # partition -> judged again at (s)
        self._pending: dict[TopicPartition, list[Any]] = {}
        # The last horizon at which every partition was judged up to it (epoch s; 0:
        # none yet this run): the labelled ids of events older may be forgotten.
        self.judged_through_s = 0.0

    @property
    def held_records(self) -> int:
        """How many records are held in memory, read but not due yet."""
        return sum(len(records) for records in self._pending.values())

    def poll(self, horizon_s: float) -> Due:
        """The events due at ``horizon_s`` (epoch seconds) among the next records."""
        batches = self._release(horizon_s)
        # A short wait, not none: a zero-timeout poll may hand the client no time to
        # read the fetch responses in flight.
        for tp, records in self.consumer.poll(timeout_ms=POLL_MS).items():
            batches[tp] = [*batches.get(tp, []), *records]
        due = Due(horizon_s=horizon_s)
        parts: list[Sequence[s.Event]] = []
        for tp, records in batches.items():
            events, taken, rejects, next_due_s = self._due(records, horizon_s)
            due.rejects += rejects
            parts.append(events)
            if taken:
                due.offsets[offset_field(EVENTS, tp.partition)] = records[taken - 1].offset + 1
            if next_due_s is not None:
                self._hold(tp, records[taken:], next_due_s)
            elif tp in self.consumer.paused():
                self.consumer.resume(tp)
        flat = [e for part in parts for e in part]
        if flat:
            due.batch = negatives(self.spec, flat, self.after_s)
        if self._current():
            self.judged_through_s = max(self.judged_through_s, horizon_s)
        return due

    def _release(self, horizon_s: float) -> dict[TopicPartition, list[Any]]:
        """The held records of the partitions whose first held event is due now (the
        partitions stay paused until all their records were judged)."""
        ready = [tp for tp, at in self._held.items() if at <= horizon_s]
        for tp in ready:
            del self._held[tp]
        return {tp: self._pending.pop(tp) for tp in ready}

    def _current(self) -> bool:
        """Whether every partition is held (its next event not due) or read to its end."""
        for tp in self.consumer.assignment():
            if tp in self._held:
                continue
            end = self.consumer.highwater(tp)
            if end is None or self.consumer.position(tp) < end:
                return False
        return True

    def _due(
        self, records: Sequence[Any], horizon_s: float
    ) -> tuple[list[s.Event], int, int, float | None]:
        """The leading due events of one partition's records, how many records they
        span (bad records among them included), how many of those were bad, and when
        the first event not due yet falls due (None: all were due)."""
        checked = self.spec.validate_batch([r.value for r in records])
        by_index = dict(zip(checked.indices, checked.events, strict=True))
        events: list[s.Event] = []
        rejects = 0
        for i in range(len(records)):
            event = by_index.get(i)
            if event is None:  # the worker dead-letters it; nothing to judge here
                rejects += 1
                continue
            due_s = event.event_time.timestamp() + self.after_s
            if due_s > horizon_s:
                return events, i, rejects, due_s
            events.append(event)
        return events, len(records), rejects, None

    def _hold(self, tp: TopicPartition, records: list[Any], due_s: float) -> None:
        """Keep ``records`` (not due yet) in memory and stop fetching ``tp`` until they
        were all judged (no seek: their offsets are not stored, so a restart reads them
        again); they are judged again once the horizon is ``HOLD_SLACK_S`` past the
        first one's due time."""
        self._pending[tp] = records
        self.consumer.pause(tp)
        self._held[tp] = due_s + HOLD_SLACK_S

    def close(self) -> None:
        """Close the consumer (nothing to commit: the offsets are in Redis)."""
        self.consumer.close(autocommit=False)


class LabelledIds:
    """The ids (hashes) of explicitly labelled events, in Redis hashes by hour of event
    time (the commands the monitor's ACL allows it: HSET, HMGET, DEL, PEXPIRE)."""

    def __init__(self, client: redis.Redis, keys: Keys, domain: str, after_s: float) -> None:
        self.client, self.keys, self.domain, self.after_s = client, keys, domain, after_s

    def _key(self, bucket: int) -> str:
        return self.keys.monitor_labelled_ids(self.domain, bucket)

    def add(self, hashes: Sequence[int], event_time_s: Sequence[float]) -> None:
        """Remember labelled ids (idempotent: written before their batch is stored)."""
        if not hashes:
            return
        now_s = time.time()
        with self.client.pipeline(transaction=False) as pipe:
            for bucket, group in _by_bucket(hashes, event_time_s).items():
                pipe.hset(self._key(bucket), mapping=dict.fromkeys(map(str, group), 1))
                # A backstop only: trim deletes the hours the delayed reader is done with.
                end_s = (bucket + 1) * BUCKET_S + self.after_s + BACKSTOP_S
                pipe.pexpire(self._key(bucket), max(1, int((end_s - now_s) * 1000)))
            pipe.execute()

    def labelled(self, hashes: Sequence[int], event_time_s: Sequence[float]) -> list[bool]:
        """Whether each of ``hashes`` (of events at ``event_time_s``) was labelled."""
        found: dict[int, bool] = {}
        groups = _by_bucket(hashes, event_time_s)
        with self.client.pipeline(transaction=False) as pipe:
            for bucket, group in groups.items():
                pipe.hmget(self._key(bucket), [str(h) for h in group])
            answers = pipe.execute()
        for group, answer in zip(groups.values(), answers, strict=True):
            found.update((h, v is not None) for h, v in zip(group, answer, strict=True))
        return [found[h] for h in hashes]

    def trim(self, horizon_s: float) -> None:
        """Forget the hours whose events are long past due (the last ``TRIM_HOURS`` of
        them: older ones went at an earlier trim, or expire)."""
        newest = int((horizon_s - self.after_s - TRIM_MARGIN_S) // BUCKET_S) - 1
        self.client.delete(*(self._key(b) for b in range(newest - TRIM_HOURS, newest + 1)))


def _by_bucket(hashes: Sequence[int], event_time_s: Sequence[float]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for hashed, at_s in zip(hashes, event_time_s, strict=True):
        groups.setdefault(int(at_s // BUCKET_S), []).append(hashed)
    return groups


# How often the labelled ids are trimmed.
TRIM_INTERVAL_S = 60.0


class ImplicitNegatives:
    """The delayed reader and the labelled ids together: one read's due events, less the
    labelled ones, taken in as negatives."""

    def __init__(self, reader: DelayedReader, ids: LabelledIds) -> None:
        self.reader, self.ids = reader, ids
        self._next_trim = 0.0

    def poll(self, horizon_s: float) -> Due:
        """The events due at ``horizon_s``; the labelled ids trimmed now and then, below
        the horizon the delayed reader judged every partition through (after a stop or a
        backlog, ids are kept until their events were judged)."""
        through_s = min(horizon_s, self.reader.judged_through_s)
        if through_s and time.monotonic() >= self._next_trim:
            self._next_trim = time.monotonic() + TRIM_INTERVAL_S
            self.ids.trim(through_s)
        return self.reader.poll(horizon_s)

    def remember(self, taken: Taken) -> None:
        """Keep the ids of a batch's explicit labels (before that batch is stored)."""
        self.ids.add(taken.hashes, taken.event_time_s)

    def take(
        self, due: Due, intake: Intake, models: Mapping[int, ActiveModel], changes: Changes
    ) -> None:
        """Take ``due``'s events that have no explicit label in as negatives."""
        changes.offsets.update(due.offsets)
        changes.counts["implicit_rejects"] += due.rejects
        # Later labels are judged late against it; stored with the offsets, so a restart
        # judges the labels it reads again as this run did.
        intake.implicit_horizon_s = max(intake.implicit_horizon_s, due.horizon_s)
        changes.offsets[HORIZON_FIELD] = int(intake.implicit_horizon_s * 1000)
        batch = due.batch
        if batch is None or not len(batch):
            return
        hashes = [id_hash(i) for i in batch.ids]
        labelled = self.ids.labelled(hashes, batch.event_time_s.tolist())
        keep = [i for i, seen in enumerate(labelled) if not seen]
        changes.counts["implicit_labelled"] += len(batch) - len(keep)
        if len(keep) < len(batch):
            batch = subset(intake.spec, batch, keep)
        intake.take_batch(batch, models, changes, counter="implicit_negatives")
