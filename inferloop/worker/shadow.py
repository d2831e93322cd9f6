"""Shadow scoring: the registry's ``challenger`` scores the champion's events beside it.

For a sample of event ids (a stable hash of the id, the same hash as the monitor's
served sample, so the same id is always in or always out) the challenger scores the
rows the champion scored, built once per batch. Its predictions go to
``<domain>.shadow`` in the predictions' own schema (``model`` naming the challenger's
version) with one more field, ``"role":"challenger"``; downstream consumers of
``<domain>.predictions`` never see them, and the champion's predictions are the bytes
they would be without a challenger.

Under exactly-once the shadow records are part of the batch's transaction, so a send to
a missing shadow topic would fail it: the transaction coordinator answers
``UNKNOWN_TOPIC_OR_PARTITION`` to adding the partition, which kafka-python retries until
the flush times out, and the batch read again would meet the same (before this gate, a
real-Kafka test saw no prediction in the 30 s after the deletion). So a
:class:`ShadowGate` looks the topic up (a metadata request) before a batch is shadowed, at
most every :data:`SHADOW_CHECK_S` and at once after a failed transaction; while it is
missing, shadow scoring is off (one WARNING, ``errors{kind="shadow_topic_missing"}``, the
sampled records counted as failed), and the topic is looked up again every
:data:`SHADOW_PAUSE_S`. The champion's predictions go on in their transactions,
exactly once. A deletion inside the check interval can still catch one transaction: it
fails after the flush timeout, and the batch read again goes without shadow records.
Under at-least-once they are best effort and go through a
producer of their own (:class:`BestEffortProducer`: not idempotent, ``acks=1``, a short
wait for metadata): nobody waits on them, a failed one is counted, never a reason to
read the batch again, and the trouble of the shadow topic cannot reach the producer of
the predictions (kafka-python 3.0.12's idempotent producer, shared, stalled when the
shadow topic was deleted).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from kafka import KafkaProducer
from kafka.errors import KafkaError

from inferloop.domains.idhash import in_sample
from inferloop.kafka_internals import KafkaInternals
from inferloop.registry.serving import ActiveModel
from inferloop.worker.metrics import WorkerMetrics
from inferloop.worker.partitioning import partitions_of

log = logging.getLogger(__name__)

# The one member a shadow record has beyond the predictions' schema (put last).
ROLE_MEMBER = ',"role":"challenger"'
ScoreFn = Callable[[Sequence[Any]], np.ndarray[Any, Any]]

# The best-effort producer's wait for a topic's metadata (kafka-python's default is a
# minute): a deleted shadow topic must not hold a batch of predictions for long.
SHADOW_MAX_BLOCK_MS = 500
# After a failed shadow send, the records of the next batches are dropped (counted as
# failed) for this long before the next try, so a missing topic costs one short wait
# per pause, not one per batch.
SHADOW_PAUSE_S = 10.0
# Under exactly-once, the shadow topic is looked up at most this often while it is there:
# a lookup (KafkaConsumer.topics(), one metadata request) measured 9 ms at a load average
# of 9 on 2 cores, so about 1 % of the loop's time; back to back, kafka-python's metadata
# back-off made each one 108 ms, so never once per batch.
SHADOW_CHECK_S = 1.0
# The errors counter's kind when the shadow topic is found missing.
TOPIC_MISSING = "shadow_topic_missing"


def sampled_indices(ids: Sequence[str], fraction: float) -> np.ndarray[Any, Any]:
    """Positions of the ids in a sample of ``fraction`` of all ids (stable per id)."""
    if fraction >= 1.0:
        return np.arange(len(ids))
    picked = [i for i, event_id in enumerate(ids) if in_sample(event_id, fraction)]
    return np.asarray(picked, dtype=np.intp)


class SharedRows:
    """The rows of one batch's events, built once for the champion and the challenger."""

    def __init__(self, events: Sequence[Any]) -> None:
        self.events = events
        self.rows: Any = None

    def scorer(self, model: ActiveModel) -> ScoreFn:
        """``model.score`` that builds (and keeps) the rows when given all the events
        (a part of them, while failures are isolated, is scored as usual)."""

        def score(part: Sequence[Any]) -> np.ndarray[Any, Any]:
            if part is not self.events:
                return model.score(part)
            if self.rows is None:
                self.rows = model.spec.to_rows(part)
            return model.scorer(self.rows)

        return score


class BestEffortProducer:
    """The shadow records' own producer under at-least-once, made on first use; after a
    failed send it stands aside for ``pause_s`` (the records meanwhile are dropped)."""

    def __init__(
        self,
        factory: Callable[[], KafkaProducer],
        discard: Callable[[KafkaProducer, float], None],
        *,
        pause_s: float = SHADOW_PAUSE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = factory
        self._discard = discard
        self._pause_s = pause_s
        self._clock = clock
        self._producer: KafkaProducer | None = None
        self._paused_until = float("-inf")

    def get(self) -> KafkaProducer | None:
        """The producer, or None while it stands aside after a failure."""
        if self._clock() < self._paused_until:
            return None
        if self._producer is None:
            self._producer = self._factory()
        return self._producer

    def failed(self) -> None:
        """A send failed: stand aside for the pause."""
        self._paused_until = self._clock() + self._pause_s

    def close(self, timeout_s: float) -> None:
        """Close the producer (what it has not sent within ``timeout_s`` is dropped)."""
        if self._producer is not None:
            self._discard(self._producer, timeout_s)
            self._producer = None


class ShadowGate:
    """Whether a batch may carry shadow records into its transaction: the shadow topic
    was there when last looked up (at most every ``check_s`` while it is, every
    ``pause_s`` while it is not, and at once after :meth:`recheck`)."""

    def __init__(
        self,
        topic: str,
        exists: Callable[[], bool],
        metrics: WorkerMetrics,
        sample: float,
        *,
        check_s: float = SHADOW_CHECK_S,
        pause_s: float = SHADOW_PAUSE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topic = topic
        self._exists = exists
        self._metrics = metrics
        self._sample = sample
        self._check_s = check_s
        self._pause_s = pause_s
        self._clock = clock
        self._open = True
        self._next_check = float("-inf")

    def open(self) -> bool:
        """Whether the shadow topic is there (looked up again when due)."""
        now = self._clock()
        if now < self._next_check:
            return self._open
        try:
            present = self._exists()
        except KafkaError as exc:  # the broker, not the topic: the batch will say
            log.debug("shadow topic %s not looked up: %s", self.topic, exc)
            present = self._open
        self._next_check = now + (self._check_s if present else self._pause_s)
        if present and not self._open:
            log.info("topic %s is there again: shadow scoring on", self.topic)
        elif not present and self._open:
            log.warning(
                "topic %s missing: shadow scoring off, looked up again every %g s (the "
                "champion's predictions go on)", self.topic, self._pause_s,
            )  # fmt: skip
            self._metrics.errors.labels(self._metrics.domain, TOPIC_MISSING).inc()
        self._open = present
        return present

    def recheck(self) -> None:
        """Look the topic up before the next batch (a transaction failed)."""
        self._next_check = float("-inf")

    def dropped(self, keys: Sequence[bytes | None]) -> None:
        """A batch of events keyed ``keys`` went without shadow: its sampled ids are
        counted as failed shadow records."""
        ids = [k.decode("utf-8", "replace") for k in keys if k is not None]
        n = len(sampled_indices(ids, self._sample))
        self._metrics.shadow_records.labels(self._metrics.domain, "failed").inc(n)


@dataclass(frozen=True)
class ShadowOutput:
    """Where and how one worker writes its shadow records (``own_producer``: the
    best-effort producer of at-least-once; None in a transaction)."""

    topic: str
    sample: float
    in_transaction: bool
    metrics: WorkerMetrics
    own_producer: BestEffortProducer | None = None

    def count(self, outcome: str, n: int = 1) -> None:
        """Count ``n`` shadow records as sent, failed or unscored."""
        self.metrics.shadow_records.labels(self.metrics.domain, outcome).inc(n)


@dataclass(slots=True)
class ShadowRecords:
    """One batch's shadow predictions, ready to be appended to the shadow topic."""

    output: ShadowOutput
    version: int
    keys: list[bytes]
    values: list[bytes]

    def __len__(self) -> int:
        return len(self.keys)

    def send(self, producer: KafkaProducer, internals: KafkaInternals) -> list[Any]:
        """Append the records through the output's own producer if it has one, else the
        batch's (its transaction, if any); the futures the batch must wait on: all of
        them in a transaction, none when best effort."""
        out, own = self.output, self.output.own_producer
        if not self.keys:
            return []
        try:
            if own is not None:
                chosen = own.get()
                if chosen is None:  # standing aside after a failure: dropped, counted
                    out.count("failed", len(self.keys))
                    return []
                producer = chosen
            partitions = partitions_of(self.keys, len(producer.partitions_for(out.topic)))
            futures = internals.append_records(
                producer, out.topic, self.keys, self.values, partitions
            )
        except Exception as exc:
            if out.in_transaction:
                raise
            # Best effort: the champion's predictions of this batch go on regardless.
            log.warning("shadow records of v%d not sent (%s: %s)", self.version,
                        type(exc).__name__, exc)  # fmt: skip
            out.count("failed", len(self.keys))
            if own is not None:
                own.failed()
            return []
        self._count_outcomes(futures)
        return futures if out.in_transaction else []

    def _count_outcomes(self, futures: list[Any]) -> None:
        """Count each record as sent or failed by its own future: the best-effort
        producer (not idempotent) can fail some of a partition's records and send the
        later ones, so no record stands for another (adding the two shared callbacks costs about
        0.4 us a record, measured on kafka-python's Future)."""
        metrics, domain = self.output.metrics, self.output.metrics.domain
        sent = metrics.shadow_records.labels(domain, "sent")
        failed = metrics.shadow_records.labels(domain, "failed")

        def on_sent(_metadata: object) -> None:
            sent.inc()

        def on_failed(_error: object) -> None:
            failed.inc()

        for future in futures:
            future.add_callback(on_sent)
            future.add_errback(on_failed)
