"""Fitting a domain's pipeline and choosing its threshold on out-of-fold scores.

The threshold is chosen on scores that models gave to examples they were not fitted
on: a fitted model's scores on its own training data are overconfident, and a
threshold chosen on them flags far more in production than it promised.

The folds run forward in time, as serving does. The examples are cut into
``folds + 1`` contiguous blocks in time within each class (no shuffling); block ``j``
is scored by a model fitted on blocks ``0 .. j - 1`` only, and the oldest block is
never scored. Ordinary k-fold would also score the oldest block with a model fitted
on its future alone, a situation serving never meets: on SpamAssassin that block
holds most of the "hard ham", which such a model scores high, so its threshold
flagged far fewer messages on the newer data than it aimed at (recall 0.90 on the
newest 20 % instead of 0.95).

The threshold is chosen on the newest out-of-fold scores only: the calibration window,
the newest stretch before the holdout that holds ``10 / target`` examples of the class
the target counts (2,000 ham for 0.5 % flagged, 50 fraud for 20 % missed). Pooled over
all folds, a threshold is set by data older than the holdout by up to the whole
training span, and under drift it misses its target on the newest data. With fewer
such examples out of fold, every out-of-fold score is used (``pooled_folds``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline

from inferloop.domains import schemas as s
from inferloop.domains.errors import TrainingError
from inferloop.domains.metrics import ThresholdTarget
from inferloop.domains.spec import DomainSpec

log = logging.getLogger(__name__)

MIN_PER_CLASS_PER_FOLD = 2

IntArray = np.ndarray[Any, np.dtype[np.intp]]
FloatArray = np.ndarray[Any, np.dtype[np.float64]]


@dataclass(frozen=True)
class Fitted:
    """A fitted pipeline, its threshold and the out-of-fold scores it was chosen on.

    ``oof_scores[i]`` is the score of example ``oof_index[i]`` (label ``oof_y[i]``),
    on the fitted pipeline's (calibrated) scale; the oldest block has no score.
    """

    pipeline: Pipeline
    threshold: float
    oof_scores: FloatArray
    oof_index: IntArray
    oof_y: np.ndarray[Any, np.dtype[np.int8]]
    # The threshold's window: out-of-fold positions from here on (the newest ones).
    calibration_start: int = 0
    # "calibration": chosen on the newest window that holds enough examples for the
    # target; "pooled_folds": the out-of-fold scores hold fewer, all of them were used.
    threshold_source: str = "pooled_folds"

    def calibration(self) -> tuple[np.ndarray[Any, Any], FloatArray]:
        """(labels, scores) of the window the threshold was chosen on."""
        start = self.calibration_start
        return self.oof_y[start:], self.oof_scores[start:]

    def describe_calibration(self, event_time_s: np.ndarray[Any, Any]) -> dict[str, Any]:
        """The window's size, classes and event times (``event_time_s`` of the training rows)."""
        y, _ = self.calibration()
        times = event_time_s[self.oof_index[self.calibration_start :]]
        return {
            "source": self.threshold_source,
            "examples": len(y),
            "positives": int(np.count_nonzero(y)),
            "event_time_min_s": float(times.min()) if len(times) else None,
            "event_time_max_s": float(times.max()) if len(times) else None,
        }


def calibration_start(y: np.ndarray[Any, Any], target: ThresholdTarget) -> int:
    """Where the newest window holding ``target.needed`` examples of its class starts.

    ``y`` are the out-of-fold labels in time order. A window that small is the one
    nearest the data the threshold will meet; an older start only dilutes it with a
    past that has drifted away (see the module's docstring). With fewer such examples
    in all of ``y``, 0: every out-of-fold score.
    """
    of_class = np.flatnonzero(np.asarray(y) == target.error_class)
    if len(of_class) < target.needed:
        return 0
    return int(of_class[len(of_class) - target.needed])


def check_trainable(y: np.ndarray[Any, Any], folds: int) -> None:
    """Raise :class:`TrainingError` unless each of the ``folds + 1`` blocks holds both classes."""
    positives = int(np.count_nonzero(y))
    negatives = len(y) - positives
    needed = (folds + 1) * MIN_PER_CLASS_PER_FOLD
    if positives < needed or negatives < needed:
        raise TrainingError(
            f"{positives} positive and {negatives} negative examples; "
            f"{folds} forward folds need at least {needed} of each"
        )


def time_blocks(y: np.ndarray[Any, Any], blocks: int) -> list[IntArray]:
    """Positions of ``blocks`` contiguous stretches of time per class, oldest first.

    ``y`` must be in event-time order. Each block holds about the same share of each
    class, so that classes collected over different periods still meet in every block.
    """
    # Without shuffling, StratifiedKFold cuts each class into contiguous blocks in
    # the given order; its test sets are those blocks, oldest first.
    splitter = StratifiedKFold(n_splits=blocks, shuffle=False)
    return [test for _, test in splitter.split(np.zeros(len(y)), y)]


def build(spec: DomainSpec, seed: int, params: Mapping[str, Any] | None = None) -> Pipeline:
    """The domain's unfitted pipeline, with ``params`` (``step__parameter`` names) set.

    An unknown parameter is a :class:`TrainingError` naming it.
    """
    pipeline = spec.build_pipeline(seed)
    if params:
        try:
            pipeline.set_params(**params)
        except ValueError as exc:
            raise TrainingError(f"{spec.name}: bad pipeline parameter: {exc}") from exc
    return pipeline


def forward_oof_scores(
    spec: DomainSpec,
    rows: s.Rows,
    y: np.ndarray[Any, Any],
    *,
    seed: int,
    folds: int,
    params: Mapping[str, Any] | None = None,
) -> tuple[IntArray, FloatArray]:
    """(positions, scores): each block scored by a model fitted on the older blocks only.

    ``rows`` must be in event-time order; the oldest of the ``folds + 1`` blocks is
    never scored, so the positions cover the newer ``folds`` blocks, in time order.
    """
    blocks = time_blocks(y, folds + 1)
    scored: list[IntArray] = []
    scores: list[FloatArray] = []
    for fold in range(1, folds + 1):
        started = time.perf_counter()
        train_idx = np.sort(np.concatenate(blocks[:fold]))
        pipeline = build(spec, seed, params)
        pipeline.fit(spec.take_rows(rows, train_idx), y[train_idx])
        test_idx = blocks[fold]
        scored.append(test_idx)
        scores.append(pipeline.predict_proba(spec.take_rows(rows, test_idx))[:, 1])
        log.debug(
            "fold %d/%d of %s: fitted on %d, scored %d in %.1fs",
            fold,
            folds,
            spec.name,
            len(train_idx),
            len(test_idx),
            time.perf_counter() - started,
        )
    index = np.concatenate(scored)
    order = np.argsort(index, kind="stable")
    return index[order], np.concatenate(scores).astype(np.float64)[order]


def fit(
    spec: DomainSpec,
    rows: s.Rows,
    y: np.ndarray[Any, Any],
    *,
    seed: int = 42,
    folds: int = 5,
    params: Mapping[str, Any] | None = None,
) -> Fitted:
    """Fit ``spec``'s pipeline on all of ``rows``; calibrate and threshold it out of fold.

    ``rows`` and ``y`` must be in event-time order (oldest first). The domain may
    calibrate the fitted pipeline's scores from the out-of-fold scores
    (:meth:`DomainSpec.calibrate`); the threshold is then chosen on the calibrated
    out-of-fold scores, so it is on the scale the fitted pipeline scores on. ``params``
    override the pipeline's parameters (``step__parameter`` names), for every fit.
    """
    y = np.asarray(y, dtype=np.int8)
    if len(y) != len(rows):
        raise TrainingError(f"{len(rows)} rows but {len(y)} labels")
    check_trainable(y, folds)
    started = time.perf_counter()
    log.info(
        "fit start: %s, %d examples (%d positive), %d forward folds",
        spec.name,
        len(y),
        int(y.sum()),
        folds,
    )
    pipeline = build(spec, seed, params)
    index, raw_scores = forward_oof_scores(spec, rows, y, seed=seed, folds=folds, params=params)
    pipeline.fit(rows, y)
    oof_y = y[index]
    pipeline, scores = spec.calibrate(pipeline, oof_y, raw_scores)
    start = calibration_start(oof_y, spec.target())
    threshold = spec.choose_threshold(oof_y[start:], scores[start:])
    source = "calibration" if start > 0 else "pooled_folds"
    log.info(
        "fit finish: %s, threshold %.6f on the newest %d of %d out-of-fold scores (%s), %.1fs",
        spec.name,
        threshold,
        len(index) - start,
        len(index),
        source,
        time.perf_counter() - started,
    )
    return Fitted(pipeline, threshold, scores, index, oof_y, start, source)
