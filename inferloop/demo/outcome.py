"""What a demo run produced, read back from the topics, and the figures derived from it.

Everything here is computed from what Kafka holds after the run (the events that were
replayed, the predictions and dead letters the workers wrote, the labels that came
back) and from the registry's history, so the summary checks the system from the
outside: an event without a prediction is a lost event, whatever the workers logged.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score


@dataclass(frozen=True)
class Predicted:
    """One prediction as read from ``<topic>.predictions``."""

    event_id: str
    version: int
    score: float
    label: str
    threshold: float
    timestamp_ms: int  # when the worker's send reached Kafka (the record's timestamp)


@dataclass(frozen=True)
class VersionQuality:
    """How one model version did on the labels that came back for its predictions."""

    version: int
    predictions: int
    labelled: int
    positives: int
    precision: float | None
    recall: float | None
    f1: float | None
    auprc: float | None


@dataclass
class DomainOutcome:
    """Everything the summary says about one domain."""

    domain: str
    replayed: int
    predicted_ids: int
    predictions: int
    duplicates: int
    lost: int
    dead_letters: dict[str, int]
    by_version: dict[int, int]
    throughput_per_s: float
    latency_ms: dict[str, float]
    quality: list[VersionQuality]
    first_v2_ms: int | None = None
    timeline: list[tuple[float, float]] = field(default_factory=list)


def parse_predictions(values: Iterable[tuple[bytes, int]]) -> list[Predicted]:
    """Predictions from (record value, record timestamp in ms) pairs."""
    found = []
    for value, timestamp_ms in values:
        body = json.loads(value)
        found.append(
            Predicted(
                event_id=body["event_id"],
                version=int(body["model"]["version"]),
                score=float(body["score"]),
                label=body["label"],
                threshold=float(body["threshold"]),
                timestamp_ms=timestamp_ms,
            )
        )
    return found


def latency_ms(
    predictions: Sequence[Predicted], event_timestamps_ms: Mapping[str, int]
) -> dict[str, float]:
    """End-to-end latency: the prediction's record time minus its input record's time."""
    delays = [
        p.timestamp_ms - event_timestamps_ms[p.event_id]
        for p in predictions
        if p.event_id in event_timestamps_ms
    ]
    if not delays:
        return {}
    array = np.asarray(delays, dtype=np.float64)
    return {
        "p50": float(np.percentile(array, 50)),
        "p95": float(np.percentile(array, 95)),
        "p99": float(np.percentile(array, 99)),
        "max": float(array.max()),
    }


def throughput_series(
    predictions: Sequence[Predicted], bucket_s: float = 1.0
) -> list[tuple[float, float]]:
    """Predictions per second over time, as (seconds since the first, rate) points."""
    if not predictions:
        return []
    times = np.array([p.timestamp_ms for p in predictions], dtype=np.float64) / 1000.0
    start = times.min()
    buckets = np.floor((times - start) / bucket_s).astype(np.int64)
    counts = np.bincount(buckets)
    return [(float(i * bucket_s), float(c / bucket_s)) for i, c in enumerate(counts)]


def overall_rate(predictions: Sequence[Predicted]) -> float:
    """Predictions per second between the first and the last prediction."""
    if len(predictions) < 2:
        return 0.0
    times = [p.timestamp_ms for p in predictions]
    span_s = (max(times) - min(times)) / 1000.0
    return len(predictions) / span_s if span_s > 0 else 0.0


def quality_by_version(
    predictions: Sequence[Predicted], labels: Mapping[str, int]
) -> list[VersionQuality]:
    """Precision, recall, F1 (at each version's threshold) and AUPRC per version, on the
    events whose label came back; the last prediction per event and version counts."""
    latest: dict[tuple[int, str], Predicted] = {}
    for p in predictions:
        latest[(p.version, p.event_id)] = p
    per_version: dict[int, list[Predicted]] = defaultdict(list)
    for (version, _), p in latest.items():
        per_version[version].append(p)
    made = Counter(p.version for p in predictions)
    result = []
    for version in sorted(per_version):
        joined = [p for p in per_version[version] if p.event_id in labels]
        y = np.array([labels[p.event_id] for p in joined], dtype=np.int8)
        scores = np.array([p.score for p in joined], dtype=np.float64)
        decided = np.array([p.score >= p.threshold for p in joined], dtype=np.int8)
        has_both = len(y) > 0 and 0 < int(y.sum()) < len(y)
        result.append(
            VersionQuality(
                version=version,
                predictions=made[version],
                labelled=len(joined),
                positives=int(y.sum()),
                precision=float(precision_score(y, decided, zero_division=0)) if has_both else None,
                recall=float(recall_score(y, decided, zero_division=0)) if has_both else None,
                f1=float(f1_score(y, decided, zero_division=0)) if has_both else None,
                auprc=float(average_precision_score(y, scores)) if has_both else None,
            )
        )
    return result


@dataclass(frozen=True)
class DomainRecords:
    """What one domain's topics held after the run."""

    replayed_ids: list[str]
    event_timestamps_ms: dict[str, int]
    predictions: list[Predicted]
    dead_letter_ids: list[str]
    dead_letter_reasons: list[str]
    labels: dict[str, int]


def summarise(domain: str, records: DomainRecords) -> DomainOutcome:
    """The outcome of one domain from what the topics held after the run."""
    predictions = records.predictions
    predicted = {p.event_id for p in predictions}
    handled = predicted | set(records.dead_letter_ids)
    lost = sum(1 for event_id in set(records.replayed_ids) if event_id not in handled)
    per_version = Counter(p.version for p in predictions)
    first = min(per_version, default=0)
    later = [p.timestamp_ms for p in predictions if p.version > first]
    return DomainOutcome(
        domain=domain,
        replayed=len(set(records.replayed_ids)),
        predicted_ids=len(predicted),
        predictions=len(predictions),
        duplicates=len(predictions) - len(predicted),
        lost=lost,
        dead_letters=dict(Counter(records.dead_letter_reasons)),
        by_version=dict(sorted(per_version.items())),
        throughput_per_s=overall_rate(predictions),
        latency_ms=latency_ms(predictions, records.event_timestamps_ms),
        quality=quality_by_version(predictions, records.labels),
        first_v2_ms=min(later) if later else None,
        timeline=throughput_series(predictions),
    )


def as_rows(outcome: DomainOutcome) -> list[dict[str, Any]]:
    """The per-version lines of the summary table."""
    rows = []
    for q in outcome.quality:
        rows.append(
            {
                "version": f"v{q.version}",
                "predictions": q.predictions,
                "labelled": q.labelled,
                "positives": q.positives,
                "precision": _fmt(q.precision),
                "recall": _fmt(q.recall),
                "f1": _fmt(q.f1),
                "auprc": _fmt(q.auprc),
            }
        )
    return rows


# The order statuses are listed in: the gate's outcomes apart, not_comparable its own.
STATUS_ORDER = ("champion", "archived", "rejected", "not_comparable", "rolled_back", "candidate")


def status_counts(versions: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How many versions have each status (``rejected`` and ``not_comparable`` apart),
    in :data:`STATUS_ORDER`, then any other status."""
    counts = Counter(str(v["status"]) for v in versions)
    order = [s for s in STATUS_ORDER if s in counts] + sorted(set(counts) - set(STATUS_ORDER))
    return {status: counts[status] for status in order}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
