"""Operator triggers: a Redis Stream read by the service's consumer group.

``inferloop retrain run DOMAIN`` adds an entry with a trigger id of its own; a service
instance reads it through the group, runs the job, stores the outcome under the
trigger id and only then acknowledges the entry. A service that dies mid-run leaves
the entry pending: it (or another instance) claims it again once it has been idle
longer than ``trigger_claim_idle_s``, and a running instance keeps the entries it
works on fresh, so a long fit is never claimed away. An outcome stored already means
the trigger ran (the acknowledgement was lost): it is acknowledged, not run again.

The entry's schema and ``publish`` live in the core (``inferloop.triggers``), so the
monitor sends triggers without importing this package; they are re-exported here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import redis
from redis.typing import StreamIdT

from inferloop.keys import Keys
from inferloop.retrain.errors import TriggerTimeoutError
from inferloop.retrain.outcome import RunOutcome
from inferloop.triggers import MAX_SEED, Trigger, TriggerEntryError, new_trigger_id, publish

log = logging.getLogger(__name__)

__all__ = [
    "GROUP",
    "MAX_SEED",
    "Trigger",
    "TriggerQueue",
    "new_trigger_id",
    "stream_entries",
]

GROUP = "retrain-service"

RawFields = Mapping[bytes | str, bytes | str]
# One stream entry as redis-py returns it: its id and its fields.
RawEntry = tuple[bytes | str, RawFields]


class TriggerQueue:
    """The trigger stream of one key prefix, seen by senders and service instances."""

    def __init__(self, client: redis.Redis, keys: Keys, *, outcome_ttl_s: float) -> None:
        self.client = client
        self.keys = keys
        self.stream = keys.retrain_triggers()
        self.outcome_ttl_s = outcome_ttl_s

    # -- senders -----------------------------------------------------------------------
    def send(self, trigger: Trigger) -> str:
        """Add ``trigger`` to the stream; return its entry id."""
        return publish(self.client, self.keys, trigger)

    def outcome(self, trigger_id: str) -> RunOutcome | None:
        """The recorded outcome of a trigger, or None while it has none."""
        raw = self.client.get(self.keys.retrain_outcome(trigger_id))
        return None if raw is None else RunOutcome.from_json(raw)

    def wait(self, trigger_id: str, timeout_s: float, poll_s: float = 0.5) -> RunOutcome:
        """Wait for the outcome of a trigger; TriggerTimeoutError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.outcome(trigger_id)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                raise TriggerTimeoutError(
                    f"trigger {trigger_id} has no outcome after {timeout_s:.0f} s; "
                    f"`inferloop retrain status` shows what runs"
                )
            time.sleep(poll_s)

    # -- service instances ------------------------------------------------------------------
    def ensure_group(self) -> None:
        """Create the consumer group (and the stream) unless they exist."""
        try:
            self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read_own_pending(self, consumer: str, count: int = 100) -> list[Trigger]:
        """Entries delivered to this consumer before and never acknowledged (a restart)."""
        return self._parse(self._read(consumer, "0", None, count))

    def read_new(self, consumer: str, block_ms: int, count: int = 10) -> list[Trigger]:
        """Entries no consumer of the group has seen, waiting up to ``block_ms``."""
        return self._parse(self._read(consumer, ">", block_ms, count))

    def done_already(self, trigger: Trigger) -> bool:
        """Whether the trigger's outcome is stored (it ran; only the ack was lost)."""
        return bool(self.client.exists(self.keys.retrain_outcome(trigger.trigger_id)))

    def claim_idle(self, consumer: str, min_idle_s: float, count: int = 10) -> list[Trigger]:
        """Entries pending with another consumer for over ``min_idle_s``, now ours."""
        answer = self.client.xautoclaim(
            self.stream, GROUP, consumer, min_idle_time=int(min_idle_s * 1000), count=count
        )
        claimed = answer[1] if len(answer) > 1 else []
        return self._parse(_with_fields(claimed))

    def keep_fresh(self, consumer: str, entry_ids: Sequence[str]) -> None:
        """Reset the idle time of entries this consumer is working on."""
        if entry_ids:
            ids: list[StreamIdT] = list(entry_ids)
            self.client.xclaim(
                self.stream, GROUP, consumer, min_idle_time=0, message_ids=ids, justid=True
            )

    def finish(self, trigger: Trigger, outcome: RunOutcome) -> None:
        """Store the outcome under the trigger id, then acknowledge the entry."""
        key = self.keys.retrain_outcome(trigger.trigger_id)
        self.client.set(key, outcome.to_json(), ex=int(self.outcome_ttl_s))
        self.ack(trigger.entry_id)

    def ack(self, entry_id: str) -> None:
        """Acknowledge (and drop) one entry."""
        pipe = self.client.pipeline(transaction=True)
        pipe.xack(self.stream, GROUP, entry_id)
        pipe.xdel(self.stream, entry_id)
        pipe.execute()

    def _read(self, consumer: str, start: str, block_ms: int | None, count: int) -> list[RawEntry]:
        answer = self.client.xreadgroup(
            GROUP, consumer, {self.stream: start}, count=count, block=block_ms
        )
        return stream_entries(answer)

    def _parse(self, entries: list[RawEntry]) -> list[Trigger]:
        triggers = []
        for raw_id, raw_fields in entries:
            entry_id = _text(raw_id)
            fields = {_text(k): _text(v) for k, v in raw_fields.items()}
            try:
                triggers.append(Trigger.from_entry(entry_id, fields))
            except TriggerEntryError as exc:
                # A malformed entry can never run: keep it out of the way, say so.
                log.error("dropping %s", exc)
                self.ack(entry_id)
        return triggers


def stream_entries(answer: object) -> list[RawEntry]:
    """The entries of a one-stream XREAD/XREADGROUP answer, in either of redis-py's shapes.

    Its legacy responses (the default, and RESP2) are ``[[stream, entries]]``; its
    unified RESP3 responses (``legacy_responses=False``) are ``{stream: entries}``.
    Nothing read is an empty list or dict, or None.
    """
    if not answer:
        return []
    if isinstance(answer, dict):
        streams = list(answer.values())
    elif isinstance(answer, list):
        streams = [pair[1] for pair in answer]
    else:
        raise TypeError(f"not a stream read answer: {answer!r}")
    return [entry for entries in streams for entry in _with_fields(entries)]


def _with_fields(entries: Sequence[Any]) -> list[RawEntry]:
    """(id, fields) of the entries that still have fields (a deleted entry has none)."""
    return [(entry[0], entry[1]) for entry in entries if entry[1]]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
