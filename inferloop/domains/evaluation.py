"""Offline evaluation: train on the older part of a data set, judge on the newest part.

The newest part is never used for fitting, tuning or choosing the threshold: the
threshold comes from the newest forward out-of-fold scores on the training part (the
calibration window), and its realised rate on the newest part is reported beside it.
The scoring rate is measured the way the worker scores: JSON bytes in, validated,
turned into rows and scored in batches of 1,000 on one core.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from inferloop.domains import get_domain, training
from inferloop.domains import schemas as s
from inferloop.domains.datasets import DATASETS, deduplicate, holdout_split, load_dataset
from inferloop.domains.errors import DomainError
from inferloop.domains.metrics import RealisedRate
from inferloop.domains.spec import DomainSpec

log = logging.getLogger(__name__)

SCORING_BATCH = 1_000
# Enough events that the rate is not one cold batch.
MIN_SCORED_EVENTS = 10_000


@dataclass(frozen=True)
class ScoringRate:
    """Events per second through validate, rows and score, on one core."""

    events: int
    batch_size: int
    seconds: float
    validate_s: float
    rows_s: float
    score_s: float
    # Baseline measured in the same run: json.loads alone over the same messages, so
    # that figures from a busy machine can still be compared as ratios.
    json_loads_s: float = 0.0
    # What scored: the pipeline itself, or the compiled form a worker serves with.
    scorer: str = "pipeline"

    @property
    def events_per_s(self) -> float:
        """The whole path: parsing, rows, scoring."""
        return self.events / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Evaluation:
    """What ``inferloop evaluate`` reports."""

    dataset: str
    domain: str
    loaded: int
    duplicates: int
    train: int
    train_positives: int
    holdout: int
    holdout_positives: int
    threshold: float
    metrics: dict[str, float]
    oof_metrics: dict[str, float]
    fit_s: float
    scoring: ScoringRate
    params: dict[str, object] = field(default_factory=dict)


def scoring_rate(
    spec: DomainSpec,
    pipeline: Pipeline,
    events: Sequence[s.Event],
    *,
    batch_size: int = SCORING_BATCH,
    min_events: int = MIN_SCORED_EVENTS,
) -> ScoringRate:
    """Measure validate + rows + score on ``events`` (cycled to ``min_events``), one core.

    Scores as a worker does: with the domain's first scorer (``DomainSpec.scorers``).
    """
    score = spec.scorers(pipeline)[0]
    values = [e.model_dump_json().encode() for e in events]
    if not values:
        raise DomainError("no events to measure the scoring rate on")
    total = max(min_events, len(values))
    stream = list(itertools.islice(itertools.cycle(values), total))
    validate_s = rows_s = score_s = 0.0
    with threadpool_limits(limits=1):
        for start in range(0, total, batch_size):
            batch = stream[start : start + batch_size]
            t0 = time.perf_counter()
            validated = spec.validate_batch(batch)
            t1 = time.perf_counter()
            rows = spec.to_rows(validated.events)
            t2 = time.perf_counter()
            score(rows)
            t3 = time.perf_counter()
            validate_s += t1 - t0
            rows_s += t2 - t1
            score_s += t3 - t2
        t0 = time.perf_counter()
        for value in stream:
            json.loads(value)
        json_loads_s = time.perf_counter() - t0
    return ScoringRate(
        json_loads_s=json_loads_s,
        events=total,
        batch_size=batch_size,
        seconds=validate_s + rows_s + score_s,
        validate_s=validate_s,
        rows_s=rows_s,
        score_s=score_s,
        scorer=score.name,
    )


def evaluate(
    dataset_name: str,
    data_dir: Path,
    *,
    holdout_fraction: float = 0.2,
    seed: int = 42,
    folds: int = 5,
    fit_threads: int | None = None,
    spec: DomainSpec | None = None,
) -> Evaluation:
    """Load, de-duplicate, split by time, fit with an out-of-fold threshold, judge.

    ``spec`` replaces the domain's default spec (e.g. with another threshold target).
    """
    dataset = load_dataset(dataset_name, data_dir)
    spec = spec or get_domain(DATASETS[dataset_name])
    if spec.name != dataset.domain:
        raise DomainError(f"data set {dataset_name!r} is not of the {spec.name} domain")
    deduplicated, duplicates = deduplicate(dataset)
    train_idx, holdout_idx = holdout_split(deduplicated, holdout_fraction)
    train, holdout = deduplicated.subset(train_idx), deduplicated.subset(holdout_idx)
    started = time.perf_counter()
    with threadpool_limits(limits=fit_threads):
        fitted = training.fit(spec, spec.to_rows(train.events), train.y, seed=seed, folds=folds)
    fit_s = time.perf_counter() - started
    scores = fitted.pipeline.predict_proba(spec.to_rows(holdout.events))[:, 1]
    return Evaluation(
        dataset=dataset_name,
        domain=spec.name,
        loaded=len(dataset),
        duplicates=duplicates,
        train=len(train),
        train_positives=int(train.y.sum()),
        holdout=len(holdout),
        holdout_positives=int(holdout.y.sum()),
        threshold=fitted.threshold,
        metrics=spec.metrics(holdout.y, scores, fitted.threshold),
        oof_metrics=spec.metrics(fitted.oof_y, fitted.oof_scores, fitted.threshold),
        fit_s=fit_s,
        scoring=scoring_rate(spec, fitted.pipeline, holdout.events),
        params={
            "seed": seed,
            "folds": folds,
            "holdout_fraction": holdout_fraction,
            "threshold_target": spec.threshold_target(),
            # calibration: the newest out-of-fold window holding 10 / target examples
            # of the target's class; pooled_folds: fewer out of fold, all of them.
            "threshold_source": fitted.threshold_source,
            "calibration_examples": len(fitted.oof_y) - fitted.calibration_start,
            "holdout_realised": RealisedRate.of_counts(
                *spec.target().errors(holdout.y, scores, fitted.threshold)
            ).as_dict(),
        },
    )
