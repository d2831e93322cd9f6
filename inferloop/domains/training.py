"""Fitting a domain's pipeline and choosing its threshold on out-of-fold scores.

The threshold is chosen on scores the model gave to examples it was not fitted on: a
fitted model's scores on its own training data are overconfident, and a threshold
chosen on them flags far more in production than it promised. The folds are
contiguous in time within each class (no shuffling), so every out-of-fold score comes
from a model that did not see that stretch of time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline

from inferloop.domains import schemas as s
from inferloop.domains.errors import TrainingError
from inferloop.domains.spec import DomainSpec

log = logging.getLogger(__name__)

MIN_PER_CLASS_PER_FOLD = 2


@dataclass(frozen=True)
class Fitted:
    """A fitted pipeline, its threshold and the out-of-fold scores it was chosen on."""

    pipeline: Pipeline
    threshold: float
    oof_scores: np.ndarray[Any, np.dtype[np.float64]]


def check_trainable(y: np.ndarray[Any, Any], folds: int) -> None:
    """Raise :class:`TrainingError` unless each fold can hold both classes."""
    positives = int(np.count_nonzero(y))
    negatives = len(y) - positives
    needed = folds * MIN_PER_CLASS_PER_FOLD
    if positives < needed or negatives < needed:
        raise TrainingError(
            f"{positives} positive and {negatives} negative examples; "
            f"{folds} folds need at least {needed} of each"
        )


def oof_scores(
    spec: DomainSpec, rows: s.Rows, y: np.ndarray[Any, Any], *, seed: int, folds: int
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Out-of-fold positive-class scores; ``rows`` must be in event-time order."""
    scores = np.empty(len(y), dtype=np.float64)
    # Without shuffling, StratifiedKFold cuts each class into contiguous blocks in
    # the given order: time-ordered folds that still hold both classes.
    splitter = StratifiedKFold(n_splits=folds, shuffle=False)
    for fold, (train_idx, test_idx) in enumerate(splitter.split(np.zeros(len(y)), y)):
        started = time.perf_counter()
        pipeline = spec.build_pipeline(seed)
        pipeline.fit(spec.take_rows(rows, train_idx), y[train_idx])
        scores[test_idx] = pipeline.predict_proba(spec.take_rows(rows, test_idx))[:, 1]
        log.debug(
            "fold %d/%d of %s fitted in %.1fs",
            fold + 1,
            folds,
            spec.name,
            time.perf_counter() - started,
        )
    return scores


def fit(
    spec: DomainSpec,
    rows: s.Rows,
    y: np.ndarray[Any, Any],
    *,
    seed: int = 42,
    folds: int = 5,
) -> Fitted:
    """Fit ``spec``'s pipeline on all of ``rows`` and choose its threshold out of fold.

    ``rows`` and ``y`` must be in event-time order (oldest first).
    """
    y = np.asarray(y, dtype=np.int8)
    if len(y) != len(rows):
        raise TrainingError(f"{len(rows)} rows but {len(y)} labels")
    check_trainable(y, folds)
    started = time.perf_counter()
    log.info(
        "fit start: %s, %d examples (%d positive), %d folds", spec.name, len(y), int(y.sum()), folds
    )
    scores = oof_scores(spec, rows, y, seed=seed, folds=folds)
    threshold = spec.choose_threshold(y, scores)
    pipeline = clone(spec.build_pipeline(seed))
    pipeline.fit(rows, y)
    log.info(
        "fit finish: %s, threshold %.6f, %.1fs", spec.name, threshold, time.perf_counter() - started
    )
    return Fitted(pipeline=pipeline, threshold=threshold, oof_scores=scores)
