"""Replaying a labelled data set into Kafka: events in event-time order, labels later.

Each event goes to the domain's events topic, keyed by its id (deterministic, so a
second replay is recognisable). A chosen share of events gets its labelled example
published to the labels topic ``label_delay_s`` after the event was sent, the way
chargebacks and spam reports arrive in real life. Record timestamps are the send
times, not the events' own times: a replayed event may be years old and would fall
straight out of time-based retention.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaProducer

from inferloop.connections import make_producer
from inferloop.domains import get_domain
from inferloop.domains.datasets import Dataset
from inferloop.domains.errors import DomainError
from inferloop.settings import ReplaySettings, Settings
from inferloop.topics import for_settings

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (events done, labels done)


class ReplayError(DomainError): ...


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

    def __post_init__(self) -> None:
        if not 0.0 <= self.start_fraction < self.end_fraction <= 1.0:
            raise ReplayError(
                f"need 0 <= start fraction < end fraction <= 1, got "
                f"{self.start_fraction} and {self.end_fraction}"
            )
        if self.rate_per_s is not None and self.rate_per_s <= 0:
            raise ReplayError(f"rate must be positive, got {self.rate_per_s}")
        if not 0.0 <= self.label_fraction <= 1.0:
            raise ReplayError(f"label fraction must be in [0, 1], got {self.label_fraction}")
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
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass
class ReplaySummary:
    """What a replay sent."""

    dataset: str
    events_topic: str
    labels_topic: str
    events_sent: int = 0
    labels_sent: int = 0
    labels_withheld: int = 0
    first_event_time: str | None = None
    last_event_time: str | None = None
    elapsed_s: float = 0.0
    failures: list[str] = field(default_factory=list)

    @property
    def events_per_s(self) -> float:
        """Events sent per second of the whole replay."""
        return self.events_sent / self.elapsed_s if self.elapsed_s else 0.0


def gets_label(event_id: str, fraction: float) -> bool:
    """Whether ``event_id``'s label comes back: a stable hash, the same at every replay."""
    if fraction >= 1.0:
        return True
    digest = hashlib.blake2b(event_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


def labelled_json(event_json: bytes, label: str, labelled_at: datetime, source: str) -> bytes:
    """The labelled example of an event: its JSON object plus label, time and source."""
    if not event_json.endswith(b"}"):
        raise ReplayError("an event's JSON must be an object")
    extra = json.dumps(
        {"label": label, "labelled_at": labelled_at.isoformat(), "label_source": source}
    ).encode()
    return event_json[:-1] + b"," + extra[1:]


def producer_config(settings: Settings) -> dict[str, Any]:
    """Durable, ordered, batched: acks from every replica, idempotent retries."""
    replay = settings.replay
    config: dict[str, Any] = {
        "acks": "all",
        "enable_idempotence": True,
        # Idempotence keeps order with up to five requests in flight.
        "max_in_flight_requests_per_connection": 5,
        "linger_ms": replay.linger_ms,
        "batch_size": replay.batch_size_bytes,
        "max_request_size": settings.worker.max_request_size,
    }
    if replay.compression_type != "none":
        config["compression_type"] = replay.compression_type
    return config


class _Replayer:
    """One replay: pacing, sending, the queue of labels that are not due yet."""

    def __init__(self, settings: Settings, dataset: Dataset, plan: ReplayPlan) -> None:
        self.spec = get_domain(dataset.domain)
        self.dataset = dataset
        self.plan = plan
        topics = for_settings(settings, dataset.domain)
        self.summary = ReplaySummary(dataset.name, topics.events, topics.labels)
        self.producer: KafkaProducer = make_producer(settings.kafka, **producer_config(settings))
        self.pending: deque[tuple[int, bytes, bytes]] = deque()  # (due ms, key, value)

    def _on_error(self, exc: BaseException) -> None:
        if len(self.summary.failures) < 10:
            self.summary.failures.append(repr(exc))
        else:
            self.summary.failures[-1] = f"... and more; last: {exc!r}"

    def _send(self, topic: str, key: bytes, value: bytes, timestamp_ms: int) -> None:
        future = self.producer.send(topic, key=key, value=value, timestamp_ms=timestamp_ms)
        future.add_errback(self._on_error)

    def send_due_labels(self, now_ms: int) -> None:
        """Send every queued label whose delay has passed."""
        while self.pending and self.pending[0][0] <= now_ms:
            _, key, value = self.pending.popleft()
            self._send(self.summary.labels_topic, key, value, now_ms)
            self.summary.labels_sent += 1

    def send_event(self, index: int, now_ms: int) -> None:
        """Send event ``index`` of the data set and queue (or send) its label."""
        event = self.dataset.events[index]
        key = event.id.encode()
        value = event.model_dump_json().encode()
        if not self.plan.labels_only:
            self._send(self.summary.events_topic, key, value, now_ms)
            self.summary.events_sent += 1
        if gets_label(event.id, self.plan.label_fraction):
            label = self.spec.label_names[int(self.dataset.y[index])]
            delay_ms = 0 if self.plan.labels_only else round(self.plan.label_delay_s * 1000)
            labelled_at = datetime.fromtimestamp((now_ms + delay_ms) / 1000, UTC)
            labelled = labelled_json(value, label, labelled_at, self.plan.label_source)
            self.pending.append((now_ms + delay_ms, key, labelled))
        else:
            self.summary.labels_withheld += 1
        time_text = event.event_time.isoformat()
        self.summary.first_event_time = self.summary.first_event_time or time_text
        self.summary.last_event_time = time_text

    def close(self) -> None:
        """Wait for every send to be acknowledged, then close the producer."""
        try:
            self.producer.flush()
        finally:
            self.producer.close()


def _now_ms() -> int:
    return int(time.time() * 1000)


def selection(dataset: Dataset, plan: ReplayPlan) -> range:
    """The positions to replay: the slice of the time-ordered data set, then the limit."""
    n = len(dataset)
    start, end = int(plan.start_fraction * n), int(plan.end_fraction * n)
    if plan.limit is not None:
        end = min(end, start + plan.limit)
    return range(start, end)


def replay(
    settings: Settings,
    dataset: Dataset,
    plan: ReplayPlan,
    *,
    progress: Progress | None = None,
    progress_every: int = 1_000,
) -> ReplaySummary:
    """Replay ``dataset`` (in event-time order) into its domain's topics per ``plan``."""
    replayer = _Replayer(settings, dataset, plan)
    positions = selection(dataset, plan)
    log.info(
        "replay start: %s, %d events to %s",
        dataset.name,
        len(positions),
        replayer.summary.events_topic,
    )
    started = time.monotonic()
    try:
        for done, index in enumerate(positions):
            _pace(plan.rate_per_s, started, done)
            now_ms = _now_ms()
            replayer.send_due_labels(now_ms)
            replayer.send_event(index, now_ms)
            if progress is not None and done % progress_every == 0:
                progress(done, replayer.summary.labels_sent)
        _drain_labels(replayer, progress, len(positions))
    finally:
        replayer.close()
    summary = replayer.summary
    summary.elapsed_s = time.monotonic() - started
    if progress is not None:
        progress(len(positions), summary.labels_sent)
    log.info(
        "replay finish: %s, %d events, %d labels, %.1fs, %d failures",
        dataset.name,
        summary.events_sent,
        summary.labels_sent,
        summary.elapsed_s,
        len(summary.failures),
    )
    if summary.failures:
        raise ReplayError(
            f"{len(summary.failures)} sends to Kafka failed, first: {summary.failures[0]}"
        )
    return summary


def _pace(rate_per_s: float | None, started: float, done: int) -> None:
    """Sleep until event number ``done`` is due at ``rate_per_s``."""
    if rate_per_s is None:
        return
    ahead_s = started + done / rate_per_s - time.monotonic()
    # Sleeping for less than a millisecond costs more than it paces.
    if ahead_s > 0.001:
        time.sleep(ahead_s)


def _drain_labels(replayer: _Replayer, progress: Progress | None, events: int) -> None:
    """Send the labels still queued, each when it is due."""
    while replayer.pending:
        wait_ms = replayer.pending[0][0] - _now_ms()
        if wait_ms > 0:
            time.sleep(min(wait_ms / 1000, 0.5))
        replayer.send_due_labels(_now_ms())
        if progress is not None:
            progress(events, replayer.summary.labels_sent)
