"""A seeded paired bootstrap of (candidate - champion) on one holdout.

Each round draws the holdout's examples with replacement (the same draw for both
models: that is what makes it paired) and computes the metric for each model on it.
A draw is a vector of counts, so each metric is computed with weights instead of
copying the holdout a thousand times: the threshold metrics from weighted confusion
counts, AUPRC and ROC-AUC from cumulative sums along each model's score order, which
is sorted once. A metric without a weighted form here falls back to the domain's
own ``metrics`` on each resampled holdout (correct, only slower).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
Weights = np.ndarray[Any, np.dtype[np.float64]]
# metric(y, scores, threshold) on a resampled holdout: the slow, general path.
MetricFn = Callable[[np.ndarray[Any, Any], np.ndarray[Any, Any], float], float]

THRESHOLD_METRICS = frozenset({"precision", "recall", "f1", "fpr", "mcc"})
RANKING_METRICS = frozenset({"auprc", "roc_auc"})


@dataclass(frozen=True)
class ModelScores:
    """One model's scores on the holdout and its decision threshold."""

    scores: np.ndarray[Any, Any]
    threshold: float


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def confusion_cells(y: np.ndarray[Any, Any], flagged: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Each example's cell of the confusion matrix: 0 tn, 1 fn, 2 fp, 3 tp."""
    return np.asarray(flagged, dtype=np.int64) * 2 + np.asarray(y, dtype=np.int64)


def threshold_metric(name: str, cells: np.ndarray[Any, Any], w: Weights) -> float:
    """``name`` at a threshold from weighted confusion counts (resample counts as weights)."""
    tn, fn, fp, tp = (float(c) for c in np.bincount(cells, weights=w, minlength=4))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    if name == "precision":
        return precision
    if name == "recall":
        return recall
    if name == "f1":
        return _ratio(2 * precision * recall, precision + recall)
    if name == "fpr":
        return _ratio(fp, fp + tn)
    den = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return _ratio(tp * tn - fp * fn, den)


class RankOrder:
    """One model's scores sorted once, with the ends of runs of equal scores."""

    def __init__(self, y: np.ndarray[Any, Any], scores: np.ndarray[Any, Any]) -> None:
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
        ranked = np.asarray(scores, dtype=np.float64)[order]
        self.order = order
        self.y = np.asarray(y, dtype=np.float64)[order]
        # The last index of each run of equal scores (a threshold between runs only).
        self.ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])

    def average_precision(self, w: Weights) -> float:
        """AUPRC (average precision, as scikit-learn defines it) under weights ``w``."""
        ws = w[self.order]
        tp = np.cumsum(ws * self.y)[self.ends]
        seen = np.cumsum(ws)[self.ends]
        if tp[-1] <= 0:
            return math.nan
        precision = np.divide(tp, seen, out=np.zeros_like(tp), where=seen > 0)
        recall_step = np.diff(tp, prepend=0.0) / tp[-1]
        return float(np.sum(recall_step * precision))

    def roc_auc(self, w: Weights) -> float:
        """ROC-AUC under weights ``w`` (ties count one half)."""
        ws = w[self.order]
        starts = np.r_[0, self.ends[:-1] + 1]
        pos = np.add.reduceat(ws * self.y, starts)
        neg = np.add.reduceat(ws * (1.0 - self.y), starts)
        total_pos, total_neg = pos.sum(), neg.sum()
        if total_pos <= 0 or total_neg <= 0:
            return math.nan
        # Scores descend, so the negatives ranked below a run are those after it.
        neg_below = total_neg - np.cumsum(neg)
        return float(np.sum(pos * (neg_below + 0.5 * neg)) / (total_pos * total_neg))


class WeightedMetric:
    """A metric of one model on a weighted holdout."""

    def __init__(self, name: str, y: np.ndarray[Any, Any], model: ModelScores) -> None:
        self.name = name
        self.y = np.asarray(y)
        if name in THRESHOLD_METRICS:
            self.cells = confusion_cells(self.y, np.asarray(model.scores) >= model.threshold)
        elif name in RANKING_METRICS:
            self.rank = RankOrder(self.y, model.scores)
        else:
            raise KeyError(name)

    def __call__(self, w: Weights) -> float:
        if self.name in THRESHOLD_METRICS:
            return threshold_metric(self.name, self.cells, w)
        if self.name == "auprc":
            return self.rank.average_precision(w)
        return self.rank.roc_auc(w)


def supports(metric: str) -> bool:
    """Whether ``metric`` has a weighted form here (the fast path)."""
    return metric in THRESHOLD_METRICS or metric in RANKING_METRICS


def paired_deltas(
    metric: str,
    y: np.ndarray[Any, Any],
    candidate: ModelScores,
    champion: ModelScores,
    *,
    rounds: int,
    seed: int,
    fallback: MetricFn | None = None,
) -> FloatArray:
    """(candidate - champion) of ``metric`` on ``rounds`` seeded resamples of the holdout.

    Rounds where the metric is undefined (a resample with one class) are dropped.
    """
    y = np.asarray(y)
    n = len(y)
    rng = np.random.default_rng(seed)
    deltas = np.empty(rounds, dtype=np.float64)
    if supports(metric):
        cand, champ = WeightedMetric(metric, y, candidate), WeightedMetric(metric, y, champion)
        for i in range(rounds):
            w = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
            deltas[i] = cand(w) - champ(w)
    else:
        if fallback is None:
            raise KeyError(f"no weighted form of {metric!r} and no fallback given")
        for i in range(rounds):
            idx = rng.integers(0, n, n)
            deltas[i] = fallback(y[idx], np.asarray(candidate.scores)[idx], candidate.threshold) - (
                fallback(y[idx], np.asarray(champion.scores)[idx], champion.threshold)
            )
    return deltas[np.isfinite(deltas)]
