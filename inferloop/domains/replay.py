"""Replaying a labelled data set into Kafka: events in event-time order, labels later.

Each event goes to the domain's events topic, keyed by its id (deterministic, so a
second replay is recognisable). A chosen share of events gets its labelled example
published to the labels topic ``label_delay_s`` after the event was sent, the way
chargebacks and spam reports arrive in real life. Record timestamps are the send
times, not the events' own times: a replayed event may be years old and would fall
straight out of time-based retention.

A broker outage is ridden out while it lasts less than ``delivery_timeout_s``: replay
keeps at most ``max_unacknowledged`` sends waiting and waits for the broker with them.
Past that (a send fails or nothing is acknowledged for that long), or on a stop
request, replay ends with a summary of what was acknowledged and a resume file (see
:mod:`inferloop.domains.replay_ledger`) from which ``run_replay(resume=...)`` goes on.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal

from kafka import KafkaProducer
from kafka.errors import KafkaError

from inferloop.connections import make_producer
from inferloop.domains import get_domain
from inferloop.domains.datasets import Dataset
from inferloop.domains.errors import DomainError
from inferloop.domains.idhash import in_sample
from inferloop.domains.replay_ledger import Ledger, PendingLabel, ResumeState
from inferloop.kafka_internals import KafkaInternals
from inferloop.settings import ReplaySettings, Settings
from inferloop.topics import for_settings

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (positions passed, labels sent)
Outcome = Literal["finished", "failed", "stopped"]
EventTime = Literal["original", "send"]
LabelPolicy = Literal["all", "feedback"]

# kafka-python reports a send past its delivery timeout itself; replay's own watch for
# "no acknowledgement at all" gives it this long more, so its error comes first.
_STALL_MARGIN_S = 5.0
# Salts the label sample's hash: which labels come back is independent of which events
# the shadow and served samples pick.
LABEL_SALT = "label"
# An outage is logged once it has held acknowledgements back this long, then this often.
_WARN_AFTER_S = 5.0
_WARN_EVERY_S = 15.0


class ReplayError(DomainError): ...


class ReplayDeliveryError(ReplayError): ...


@dataclass(frozen=True)
class ReplayPlan:
    """What to replay and how."""

    rate_per_s: float | None = None
    label_delay_s: float = 30.0
    label_fraction: float = 1.0
    label_source: str = "replay"
    labels_only: bool = False
    start_fraction: float = 0.0
    end_fraction: float = 1.0
    limit: int | None = None
    event_time: EventTime = "original"
    label_policy: LabelPolicy = "all"
    positive_report_share: float = 1.0
    false_positive_report_share: float = 0.02

    def __post_init__(self) -> None:
        if not 0.0 <= self.start_fraction < self.end_fraction <= 1.0:
            raise ReplayError(
                f"need 0 <= start fraction < end fraction <= 1, got "
                f"{self.start_fraction} and {self.end_fraction}"
            )
        if self.rate_per_s is not None and self.rate_per_s <= 0:
            raise ReplayError(f"rate must be positive, got {self.rate_per_s}")
        shares = (self.label_fraction, self.positive_report_share, self.false_positive_report_share)
        if not all(0.0 <= share <= 1.0 for share in shares):
            raise ReplayError(f"label shares must be in [0, 1], got {shares}")
        if self.label_delay_s < 0:
            raise ReplayError(f"label delay must be >= 0, got {self.label_delay_s}")

    @classmethod
    def from_settings(cls, replay: ReplaySettings, **overrides: Any) -> ReplayPlan:
        """A plan from the replay settings; ``overrides`` that are None are ignored."""
        values: dict[str, Any] = {
            "rate_per_s": replay.rate_per_s,
            "label_delay_s": replay.label_delay_s,
            "label_fraction": replay.label_fraction,
            "label_source": replay.label_source,
            "event_time": replay.event_time,
            "label_policy": replay.label_policy,
            "positive_report_share": replay.positive_report_share,
            "false_positive_report_share": replay.false_positive_report_share,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def label_share(self, positive: bool) -> float:
        """The share of events of this class whose label comes back.

        "all": ``label_fraction`` of every class. "feedback" is what a live system
        hears without asking: positives are reported (a spam report, a chargeback:
        ``positive_report_share``), a negative only when a flag on it is appealed.
        Replay does not see the model's flags, so ``false_positive_report_share`` of
        all negatives (chosen by id hash) stands for the appealed ones: set it to the
        model's false-positive rate times the share of flags appealed. That gives the
        labelled set the production mix of classes, but not the bias of its negatives
        towards the hard ones the model flags.
        """
        if self.label_policy == "all":
            return self.label_fraction
        return self.positive_report_share if positive else self.false_positive_report_share


@dataclass
class ReplaySummary:
    """What a replay sent and had acknowledged, and where a resume goes on from."""

    dataset: str
    events_topic: str
    labels_topic: str
    outcome: Outcome = "finished"
    events_sent: int = 0
    events_acknowledged: int = 0
    labels_sent: int = 0
    labels_acknowledged: int = 0
    labels_withheld: int = 0
    # Over every run of a resumed replay.
    events_acknowledged_total: int = 0
    labels_acknowledged_total: int = 0
    first_event_time: str | None = None
    last_event_time: str | None = None
    elapsed_s: float = 0.0
    error: str | None = None
    # Set when the replay did not finish: the resume file, the position it resumes
    # at and the labels it holds.
    resume_file: str | None = None
    next_position: int | None = None
    labels_waiting: int = 0

    @property
    def events_per_s(self) -> float:
        """Events sent per second of the whole replay."""
        return self.events_sent / self.elapsed_s if self.elapsed_s else 0.0


def gets_label(event_id: str, fraction: float) -> bool:
    """Whether ``event_id``'s label comes back: a stable sample, the same at every replay,
    salted so that it is drawn independently of the worker's shadow sample and the
    monitor's served sample (which use the unsalted hash)."""
    return in_sample(event_id, fraction, salt=LABEL_SALT)


def labelled_json(event_json: bytes, label: str, labelled_at: datetime, source: str) -> bytes:
    """The labelled example of an event: its JSON object plus label, time and source."""
    if not event_json.endswith(b"}"):
        raise ReplayError("an event's JSON must be an object")
    extra = json.dumps(
        {"label": label, "labelled_at": labelled_at.isoformat(), "label_source": source}
    ).encode()
    return event_json[:-1] + b"," + extra[1:]


def producer_config(settings: Settings) -> dict[str, Any]:
    """Durable, ordered, batched: acks from every replica, idempotent retries, and a
    delivery timeout after which a send fails instead of being retried for good."""
    replay = settings.replay
    delivery_ms = round(replay.delivery_timeout_s * 1000)
    config: dict[str, Any] = {
        "acks": "all",
        "enable_idempotence": True,
        # Idempotence keeps order with up to five requests in flight.
        "max_in_flight_requests_per_connection": 5,
        "linger_ms": replay.linger_ms,
        "batch_size": replay.batch_size_bytes,
        "max_request_size": settings.worker.max_request_size,
        "delivery_timeout_ms": delivery_ms,
        # kafka-python refuses a delivery timeout under linger + request timeout.
        "request_timeout_ms": max(1, min(settings.kafka.request_timeout_ms,
                                         delivery_ms - replay.linger_ms)),
        # send() waits this long at most for metadata.
        "max_block_ms": delivery_ms,
    }  # fmt: skip
    if replay.compression_type != "none":
        config["compression_type"] = replay.compression_type
    return config


class _Replayer:
    """One replay: pacing, sending, the queue of labels that are not due yet."""

    def __init__(
        self,
        settings: Settings,
        dataset: Dataset,
        plan: ReplayPlan,
        resume: ResumeState | None,
        stop: threading.Event,
    ) -> None:
        self.spec = get_domain(dataset.domain)
        self.dataset = dataset
        self.plan = plan
        self.settings = settings.replay
        self.stop = stop
        topics = for_settings(settings, dataset.domain)
        self.summary = ReplaySummary(dataset.name, topics.events, topics.labels)
        positions = selection(dataset, plan)
        self.ledger = Ledger(next_position=positions.start, labels_only=plan.labels_only)
        self.queue: deque[PendingLabel] = deque()  # in due order
        self.warned = 0.0  # when the last "waiting for Kafka" line was logged
        # Positions of the selection passed so far (sent, or done before a resume): what
        # progress counts, labels-only replays included.
        self.walked_from, self.walked = positions.start, 0
        if resume is not None:
            self._resume_from(resume)
        self.producer: KafkaProducer = make_producer(settings.kafka, **producer_config(settings))
        # Closes the producer at once, dropping what it holds, when replay stops early.
        self.internals = KafkaInternals(settings.worker.kafka_shortcuts)
        self._learn_partitions()

    def _learn_partitions(self) -> None:
        # A send to a topic the producer has no metadata for waits for it (up to the
        # delivery timeout), deaf to a stop: the first label sent during an outage did.
        for topic in (self.summary.events_topic, self.summary.labels_topic):
            try:
                self.producer.partitions_for(topic)
            except KafkaError as exc:
                self.internals.discard(self.producer)
                raise ReplayError(f"no partitions of {topic} from Kafka: {exc!r}") from exc

    def _resume_from(self, resume: ResumeState) -> None:
        if (resume.events_topic, resume.labels_topic) != (
            self.summary.events_topic,
            self.summary.labels_topic,
        ):
            raise ReplayError(
                f"the resume file is for {resume.events_topic} and {resume.labels_topic}, "
                f"these settings name {self.summary.events_topic}"
            )
        self.ledger.next_position = resume.next_position
        self.ledger.done_beyond = set(resume.done_beyond)
        for label in resume.labels:
            self.ledger.label_queued(label)
            self.queue.append(label)

    def check(self) -> None:
        """Raise :class:`ReplayDeliveryError` when a send failed or the broker went quiet."""
        if self.ledger.first_error is not None:
            raise ReplayDeliveryError(f"a send to Kafka failed: {self.ledger.first_error}")
        stalled_s = self.ledger.stalled_s()
        if stalled_s > self.settings.delivery_timeout_s + _STALL_MARGIN_S:
            raise ReplayDeliveryError(
                f"no acknowledgement from Kafka for {stalled_s:.0f}s "
                f"with {self.ledger.in_flight} sends in flight"
            )
        if stalled_s >= _WARN_AFTER_S and time.monotonic() - self.warned >= _WARN_EVERY_S:
            self.warned = time.monotonic()
            log.warning(
                "replay waiting for Kafka: %d sends unacknowledged for %.0fs (gives up at %.0fs)",
                self.ledger.in_flight,
                stalled_s,
                self.settings.delivery_timeout_s,
            )

    def wait_for_room(self) -> None:
        """Wait (watching for failures) while too many sends wait for acknowledgement.

        kafka-python 3.0's producer has no bound on what it holds (no buffer_memory),
        so an outage would otherwise pile the whole data set into memory."""
        ledger, limits = self.ledger, self.settings
        while (
            ledger.in_flight >= limits.max_unacknowledged
            or ledger.in_flight_bytes >= limits.max_unacknowledged_bytes
        ):
            self.check()
            if self.stop.wait(0.005):
                return

    def settle(self, timeout_s: float | None) -> bool:
        """Wait for every send in flight to be acknowledged, within ``timeout_s`` when
        given (else until one fails, the broker goes quiet or a stop comes); whether
        they all were."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.ledger.in_flight > 0:
            if deadline is None:
                self.check()
                if self.stop.is_set():
                    return False
            elif time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def _send(
        self, topic: str, key: bytes, value: bytes, timestamp_ms: int, on_ack: Callable[[], None]
    ) -> None:
        size = len(key) + len(value)
        try:
            future = self.producer.send(topic, key=key, value=value, timestamp_ms=timestamp_ms)
        except KafkaError as exc:
            self.ledger.failed(size, exc)
            raise ReplayDeliveryError(f"Kafka refused a send: {exc!r}") from exc
        future.add_callback(lambda _metadata: on_ack())
        future.add_errback(partial(self.ledger.failed, size))

    def send_due_labels(self, now_ms: int) -> None:
        """Send every queued label whose delay has passed."""
        ledger = self.ledger
        while self.queue and self.queue[0].due_ms <= now_ms:
            label = self.queue.popleft()
            size = len(label.key) + len(label.value)
            ledger.label_sent(size)
            on_ack = partial(ledger.label_acknowledged, label.position, size)
            self._send(self.summary.labels_topic, label.key, label.value, now_ms, on_ack)

    def send_event(self, index: int, now_ms: int) -> None:
        """Send event ``index`` of the data set and queue its label, when it gets one."""
        event = self.dataset.events[index]
        if self.plan.event_time == "send":
            event = event.model_copy(
                update={"event_time": datetime.fromtimestamp(now_ms / 1000, UTC)}
            )
        key = event.id.encode()
        value = event.model_dump_json().encode()
        if not self.plan.labels_only:
            size = len(key) + len(value)
            self.ledger.event_sent(size)
            on_ack = partial(self.ledger.event_acknowledged, index, size)
            self._send(self.summary.events_topic, key, value, now_ms, on_ack)
        self._queue_label(index, key, value, now_ms)
        time_text = event.event_time.isoformat()
        self.summary.first_event_time = self.summary.first_event_time or time_text
        self.summary.last_event_time = time_text

    def _queue_label(self, index: int, key: bytes, value: bytes, now_ms: int) -> None:
        y = int(self.dataset.y[index])
        if not gets_label(key.decode(), self.plan.label_share(positive=y == 1)):
            self.summary.labels_withheld += 1
            self.ledger.label_withheld(index)
            return
        delay_ms = 0 if self.plan.labels_only else round(self.plan.label_delay_s * 1000)
        labelled_at = datetime.fromtimestamp((now_ms + delay_ms) / 1000, UTC)
        name = self.spec.label_names[y]
        label = PendingLabel(
            index, now_ms + delay_ms, key,
            labelled_json(value, name, labelled_at, self.plan.label_source),
        )  # fmt: skip
        self.ledger.label_queued(label)
        self.queue.append(label)

    def close(self, outcome: Outcome) -> None:
        """Close the producer: at once unless every send was acknowledged."""
        if outcome == "finished":
            self.producer.close()
        else:
            self.internals.discard(self.producer)


def _now_ms() -> int:
    return int(time.time() * 1000)


def selection(dataset: Dataset, plan: ReplayPlan) -> range:
    """The positions to replay: the slice of the time-ordered data set, then the limit."""
    n = len(dataset)
    start, end = int(plan.start_fraction * n), int(plan.end_fraction * n)
    if plan.limit is not None:
        end = min(end, start + plan.limit)
    return range(start, end)


def run_replay(
    settings: Settings,
    dataset: Dataset,
    plan: ReplayPlan,
    *,
    resume: Path | None = None,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    progress_every: int = 1_000,
) -> ReplaySummary:
    """Replay ``dataset`` (in event-time order) into its domain's topics per ``plan``.

    Goes on from the resume file ``resume`` when given (its plan must be ``plan``; see
    :func:`read_resume`). Setting ``stop`` stops it (within ``stop_grace_s`` for the
    sends in flight). The summary's outcome says how it ended; unless it finished, a
    resume file was written and the summary names it.
    """
    state = ResumeState.read(resume) if resume is not None else None
    replayer = _Replayer(settings, dataset, plan, state, stop or threading.Event())
    log.info(
        "replay start: %s, %d events to %s%s",
        dataset.name,
        len(selection(dataset, plan)),
        replayer.summary.events_topic,
        f", resuming at {replayer.ledger.next_position} from {resume}" if resume else "",
    )
    started = time.monotonic()
    outcome: Outcome = "stopped"
    try:
        if _stream(replayer, progress, progress_every) and replayer.settle(None):
            outcome = "finished"
        else:
            replayer.settle(settings.replay.stop_grace_s)
    except ReplayDeliveryError as exc:
        outcome = "failed"
        replayer.summary.error = str(exc)
        log.error("replay failed: %s: %s", dataset.name, exc)
    finally:
        replayer.close(outcome if replayer.summary.error is None else "failed")
    summary = _summarise(replayer, outcome, state, started)
    if outcome != "finished":
        _write_resume(settings, replayer, plan, state, resume)
    elif resume is not None:
        resume.unlink(missing_ok=True)  # done: a second resume would re-send its labels
    if progress is not None:
        progress(replayer.walked, summary.labels_sent)
    log.info(
        "replay %s: %s, %d of %d events and %d of %d labels acknowledged, %.1fs%s",
        outcome,
        dataset.name,
        summary.events_acknowledged,
        summary.events_sent,
        summary.labels_acknowledged,
        summary.labels_sent,
        summary.elapsed_s,
        f"; resume with --resume {summary.resume_file}" if summary.resume_file else "",
    )
    return summary


def replay(
    settings: Settings,
    dataset: Dataset,
    plan: ReplayPlan,
    *,
    progress: Progress | None = None,
    progress_every: int = 1_000,
) -> ReplaySummary:
    """:func:`run_replay`, raising :class:`ReplayError` unless the replay finished."""
    summary = run_replay(settings, dataset, plan, progress=progress, progress_every=progress_every)
    if summary.outcome != "finished":
        raise ReplayError(
            f"replay {summary.outcome} ({summary.error}); {summary.events_acknowledged} "
            f"events acknowledged, resume file {summary.resume_file}"
        )
    return summary


def _stream(replayer: _Replayer, progress: Progress | None, every: int) -> bool:
    """Send the selection's events and their labels; False when stopped first."""
    rate = replayer.plan.rate_per_s
    started = time.monotonic()
    done = 0
    for index in selection(replayer.dataset, replayer.plan):
        if replayer.stop.is_set():
            return False
        if replayer.ledger.is_done(index):
            continue  # acknowledged before the resume
        _pace(rate, started, done, replayer.stop)
        now_ms = _now_ms()
        replayer.send_due_labels(now_ms)
        replayer.send_event(index, now_ms)
        replayer.check()
        replayer.wait_for_room()
        done += 1
        replayer.walked = index + 1 - replayer.walked_from
        if progress is not None and done % every == 0:
            progress(replayer.walked, replayer.ledger.counts.labels_sent)
    return _drain_labels(replayer, progress)


def _pace(rate_per_s: float | None, started: float, done: int, stop: threading.Event) -> None:
    """Wait until event number ``done`` is due at ``rate_per_s`` (or a stop)."""
    if rate_per_s is None:
        return
    ahead_s = started + done / rate_per_s - time.monotonic()
    # Sleeping for less than a millisecond costs more than it paces.
    if ahead_s > 0.001:
        stop.wait(ahead_s)


def _drain_labels(replayer: _Replayer, progress: Progress | None) -> bool:
    """Send the labels still queued, each when it is due; False when stopped first."""
    while replayer.queue:
        wait_ms = replayer.queue[0].due_ms - _now_ms()
        if wait_ms > 0 and replayer.stop.wait(min(wait_ms / 1000, 0.5)):
            return False
        replayer.send_due_labels(_now_ms())
        replayer.check()
        replayer.wait_for_room()
        if progress is not None:
            progress(replayer.walked, replayer.ledger.counts.labels_sent)
    return not replayer.stop.is_set()


def _summarise(
    replayer: _Replayer, outcome: Outcome, state: ResumeState | None, started: float
) -> ReplaySummary:
    summary, counts = replayer.summary, replayer.ledger.counts
    summary.outcome = outcome
    summary.events_sent, summary.labels_sent = counts.events_sent, counts.labels_sent
    summary.events_acknowledged = counts.events_acknowledged
    summary.labels_acknowledged = counts.labels_acknowledged
    summary.events_acknowledged_total = counts.events_acknowledged + (
        state.events_acknowledged if state else 0
    )
    summary.labels_acknowledged_total = counts.labels_acknowledged + (
        state.labels_acknowledged if state else 0
    )
    summary.elapsed_s = time.monotonic() - started
    return summary


def _write_resume(
    settings: Settings,
    replayer: _Replayer,
    plan: ReplayPlan,
    state: ResumeState | None,
    path: Path | None,
) -> None:
    """Write where this replay goes on from; a resumed one rewrites its own file."""
    summary, ledger = replayer.summary, replayer.ledger
    labels = ledger.resume_labels()
    if path is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        folder = settings.replay.resume_dir or settings.services.state_dir / "replay"
        path = folder / f"{summary.events_topic}-{summary.dataset}-{stamp}.json"
    ResumeState(
        dataset=summary.dataset,
        domain=replayer.dataset.domain,
        events_topic=summary.events_topic,
        labels_topic=summary.labels_topic,
        plan=asdict(plan),
        next_position=ledger.next_position,
        done_beyond=tuple(sorted(ledger.done_beyond)),
        labels=labels,
        events_acknowledged=summary.events_acknowledged_total,
        labels_acknowledged=summary.labels_acknowledged_total,
    ).write(path)
    summary.resume_file = str(path)
    summary.next_position = ledger.next_position
    summary.labels_waiting = len(labels)


def read_resume(path: Path) -> tuple[str, ReplayPlan]:
    """The data set and plan of the replay that wrote resume file ``path``."""
    state = ResumeState.read(path)
    try:
        return state.dataset, ReplayPlan(**state.plan)
    except TypeError as exc:
        raise ReplayError(f"resume file {path} holds a plan this version cannot read") from exc
