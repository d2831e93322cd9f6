"""Prometheus metrics of one worker process, in a registry of its own.

Per-event figures (end-to-end latency) are recorded a batch at a time: a histogram
here takes a whole numpy array, so the loop never pays per message for them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0,
)  # fmt: skip
BATCH_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000)


class BulkHistogram(Collector):
    """A histogram fed whole arrays at once (``observe_many``), for per-event values."""

    def __init__(
        self, name: str, documentation: str, labels: dict[str, str], buckets: Sequence[float]
    ) -> None:
        self._name = name
        self._doc = documentation
        self._labels = labels
        self._bounds = np.asarray(buckets, dtype=np.float64)
        self._counts = np.zeros(len(buckets) + 1, dtype=np.int64)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: np.ndarray) -> None:
        """Add every value of ``values`` (one call per batch)."""
        if values.size == 0:
            return
        slots = np.searchsorted(self._bounds, values, side="left")
        counts = np.bincount(slots, minlength=len(self._counts))
        total = float(values.sum())
        with self._lock:
            self._counts += counts
            self._sum += total

    def collect(self) -> Iterator[HistogramMetricFamily]:
        """The histogram in Prometheus' cumulative form."""
        with self._lock:
            cumulative = np.cumsum(self._counts)
            total = self._sum
        family = HistogramMetricFamily(self._name, self._doc, labels=list(self._labels))
        buckets = [
            (repr(float(b)), float(c)) for b, c in zip(self._bounds, cumulative, strict=False)
        ]
        buckets.append(("+Inf", float(cumulative[-1])))
        family.add_metric(list(self._labels.values()), buckets, total)
        yield family


class WorkerMetrics:
    """Every metric a worker process serves, labelled with its domain."""

    def __init__(self, domain: str) -> None:
        self.domain = domain
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        d = ["domain"]
        p = "inferloop_worker_"
        self.events = Counter(p + "events_consumed", "Messages consumed.", d, registry=r)
        self.predictions = Counter(
            p + "predictions", "Predictions produced.", [*d, "label", "version"], registry=r
        )
        self.positive_rate = Gauge(
            p + "positive_ratio",
            "Share of this process's predictions that are positive, per model version.",
            [*d, "version"],
            registry=r,
        )
        self.holdout_positive_rate = Gauge(
            p + "holdout_positive_ratio",
            "Share of positives the version predicted on its holdout at training time.",
            [*d, "version"],
            registry=r,
        )
        self.dead_letters = Counter(
            p + "dead_letters", "Messages dead-lettered.", [*d, "reason"], registry=r
        )
        self.batch_size = Histogram(
            p + "batch_messages", "Messages per polled batch.", d, buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.scoring_seconds = Histogram(
            p + "scoring_seconds", "Validation and the vectorised scoring call, per batch.", d,
            buckets=LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.batch_seconds = Histogram(
            p + "batch_seconds", "Poll to committed, per batch.", d, buckets=LATENCY_BUCKETS_S,
            registry=r,
        )  # fmt: skip
        self.end_to_end = BulkHistogram(
            p + "end_to_end_seconds",
            "Prediction time minus the input record's Kafka timestamp.",
            {"domain": domain},
            LATENCY_BUCKETS_S,
        )
        r.register(self.end_to_end)
        self.lag = Gauge(p + "consumer_lag_messages", "Messages behind the end, per partition.",
                         [*d, "partition"], registry=r)  # fmt: skip
        self.partitions = Gauge(p + "assigned_partitions", "Partitions assigned.", d, registry=r)
        self.model_version = Gauge(p + "model_version", "Model version in use.", d, registry=r)
        self.swaps = Counter(p + "model_swaps", "Model versions swapped in.", d, registry=r)
        self.swap_pause = Histogram(
            p + "model_swap_pause_seconds", "Time the loop stood still for a swap.", d,
            buckets=LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.load_seconds = Histogram(
            p + "model_load_seconds", "Background load and verification of a version.", d,
            buckets=LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.refused = Counter(
            p + "models_refused", "Versions that failed to load or verify.", [*d, "version"],
            registry=r,
        )  # fmt: skip
        self.errors = Counter(p + "errors", "Errors by kind.", [*d, "kind"], registry=r)
        self.redis_up = Gauge(p + "redis_up", "1 when Redis answered last time.", d, registry=r)
        self.model_fallback = Gauge(
            p + "model_fallback",
            "1 while serving an earlier version because the champion failed verification.",
            d,
            registry=r,
        )
        self.challenger_version = Gauge(
            p + "challenger_version", "Challenger version scored in shadow (0: none).", d,
            registry=r,
        )  # fmt: skip
        self.shadow_records = Counter(
            p + "shadow_records",
            "The challenger's shadow predictions by outcome: sent (acknowledged), failed "
            "(not written; best effort at-least-once), unscored (its scoring raised).",
            [*d, "outcome"],
            registry=r,
        )
        for outcome in ("sent", "failed", "unscored"):
            self.shadow_records.labels(domain, outcome)
        self._positives: dict[str, tuple[int, int]] = {}
        # Series labelled by the domain alone exist from the start (zero until used).
        for metric in (self.events, self.batch_size, self.scoring_seconds, self.batch_seconds,
                       self.partitions, self.swaps, self.swap_pause, self.load_seconds,
                       self.redis_up, self.model_fallback,
                       self.challenger_version):  # fmt: skip
            metric.labels(domain)

    def count_predictions(
        self, version: int, positives: int, total: int, names: Sequence[str]
    ) -> None:
        """Record one batch's predictions of ``version``: ``positives`` out of ``total``."""
        v = str(version)
        negative, positive = names
        if positives:
            self.predictions.labels(self.domain, positive, v).inc(positives)
        if total - positives:
            self.predictions.labels(self.domain, negative, v).inc(total - positives)
        seen_pos, seen_all = self._positives.get(v, (0, 0))
        seen_pos, seen_all = seen_pos + positives, seen_all + total
        self._positives[v] = (seen_pos, seen_all)
        if seen_all:
            self.positive_rate.labels(self.domain, v).set(seen_pos / seen_all)
