"""Shadow scoring: the registry's ``challenger`` scores the champion's events beside it.

For a sample of event ids (a stable hash of the id, the same hash as the monitor's
served sample, so the same id is always in or always out) the challenger scores the
rows the champion scored, built once per batch. Its predictions go to
``<domain>.shadow`` in the predictions' own schema (``model`` naming the challenger's
version) with one more field, ``"role":"challenger"``; downstream consumers of
``<domain>.predictions`` never see them, and the champion's predictions are the bytes
they would be without a challenger.

Under exactly-once the shadow records are part of the batch's transaction (a failed
shadow send fails the transaction, like any of its sends); under at-least-once they
are best effort: nobody waits on them, and a failed one is counted, never a reason to
read the batch again.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from kafka import KafkaProducer

from inferloop.domains.idhash import in_sample
from inferloop.kafka_internals import KafkaInternals
from inferloop.registry.serving import ActiveModel
from inferloop.worker.metrics import WorkerMetrics
from inferloop.worker.partitioning import partitions_of

log = logging.getLogger(__name__)

# The one member a shadow record has beyond the predictions' schema (put last).
ROLE_MEMBER = ',"role":"challenger"'
ScoreFn = Callable[[Sequence[Any]], np.ndarray[Any, Any]]


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


@dataclass(frozen=True)
class ShadowOutput:
    """Where and how one worker writes its shadow records."""

    topic: str
    sample: float
    in_transaction: bool
    metrics: WorkerMetrics

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
        """Append the records through the batch's producer (its transaction, if any);
        the futures the batch must wait on: all of them in a transaction, none when best
        effort."""
        out = self.output
        if not self.keys:
            return []
        try:
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
            return []
        self._count_outcomes(futures, partitions)
        return futures if out.in_transaction else []

    def _count_outcomes(self, futures: list[Any], partitions: list[int]) -> None:
        """Count the records as sent or failed by their partition's last record: a
        partition's records are acknowledged in order (the producer is idempotent), and
        a callback per partition costs the loop less than one per record (3.4 us)."""
        metrics, domain = self.output.metrics, self.output.metrics.domain
        sent = metrics.shadow_records.labels(domain, "sent")
        failed = metrics.shadow_records.labels(domain, "failed")
        last = {partition: i for i, partition in enumerate(partitions)}
        for partition, n in Counter(partitions).items():
            future = futures[last[partition]]
            future.add_callback(lambda _metadata, n=n: sent.inc(n))
            future.add_errback(lambda _error, n=n: failed.inc(n))
