"""A seeded paired bootstrap of (candidate - champion) on one holdout.

Each round draws the holdout's examples with replacement (the same draw for both
models: that is what makes it paired) and computes the metric for each model on it.
Nothing is copied per round. For the threshold metrics the draw's counts (computed
once for both models) weigh each example's cell of the confusion matrix. For AUPRC
each example is mapped once to a bin, the first group of equally scored examples
holding a positive at or after its rank; a round is one ``bincount`` of the drawn
examples' bins, and those counts, summed in rank order, are exactly the examples seen
and the positives caught at each threshold where recall moves, which is all average
precision needs. ROC-AUC counts every group. A metric without such a form falls back
to the domain's own ``metrics`` on each resampled holdout (correct, only slower).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from inferloop.domains.metrics import ThresholdTarget as Target

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
Draw = np.ndarray[Any, np.dtype[np.integer[Any]]]  # indices of one resample of the holdout
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
    return np.asarray(flagged, dtype=np.intp) * 2 + np.asarray(y, dtype=np.intp)


class Resample:
    """One draw of the holdout with replacement, seen as indices or as counts."""

    def __init__(self, draw: Draw, n: int) -> None:
        self.draw = draw
        self.n = n

    @cached_property
    def counts(self) -> FloatArray:
        """How often each example was drawn (computed once, shared by both models)."""
        return np.bincount(self.draw, minlength=self.n).astype(np.float64)


def threshold_metric(name: str, counts: np.ndarray[Any, Any]) -> float:
    """``name`` from the confusion counts (tn, fn, fp, tp) of a resample."""
    tn, fn, fp, tp = (float(c) for c in counts)
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
    """One model's scores ranked once, each example mapped to its bins."""

    def __init__(self, y: np.ndarray[Any, Any], scores: np.ndarray[Any, Any]) -> None:
        values = np.asarray(scores, dtype=np.float64)
        order = np.argsort(-values, kind="stable")
        ranked = values[order]
        self.y = np.asarray(y, dtype=np.float64)
        # The group (run of equal scores, best first) of each example.
        group_of_ranked = np.cumsum(np.r_[0, ranked[1:] != ranked[:-1]])
        self.groups = int(group_of_ranked[-1]) + 1 if len(values) else 0
        self.group = np.empty(len(values), dtype=np.intp)
        self.group[order] = group_of_ranked
        # Groups that hold a positive: where recall moves, so where AUPRC is summed.
        positive_groups = np.unique(self.group[self.y > 0])
        self.bins = len(positive_groups)
        segment = np.searchsorted(positive_groups, self.group)
        # Bin and class in one code, so a round is one gather and one bincount.
        self.code = (segment * 2 + (self.y > 0)).astype(np.intp)

    def average_precision(self, draw: Draw) -> float:
        """AUPRC (average precision, as scikit-learn defines it) of a resample."""
        counts = np.bincount(self.code[draw], minlength=2 * self.bins + 2)[: 2 * self.bins]
        by_bin = counts.reshape(self.bins, 2)  # (negatives, positives) per bin
        seen = np.cumsum(by_bin.sum(axis=1))
        tp = np.cumsum(by_bin[:, 1]).astype(np.float64)
        if not len(tp) or tp[-1] <= 0:
            return math.nan
        precision = np.divide(tp, seen, out=np.zeros_like(tp), where=seen > 0)
        recall_step = np.diff(tp, prepend=0.0) / tp[-1]
        return float(np.sum(recall_step * precision))

    def roc_auc(self, draw: Draw) -> float:
        """ROC-AUC of a resample (ties count one half)."""
        group = self.group[draw]
        pos = np.bincount(group, weights=self.y[draw], minlength=self.groups)
        neg = np.bincount(group, minlength=self.groups) - pos
        total_pos, total_neg = pos.sum(), neg.sum()
        if total_pos <= 0 or total_neg <= 0:
            return math.nan
        # Groups run from the best score down: the negatives below a group come after it.
        neg_below = total_neg - np.cumsum(neg)
        return float(np.sum(pos * (neg_below + 0.5 * neg)) / (total_pos * total_neg))


class ResampledMetric:
    """A metric of one model on resamples of the holdout."""

    def __init__(self, name: str, y: np.ndarray[Any, Any], model: ModelScores) -> None:
        self.name = name
        y = np.asarray(y)
        if name in THRESHOLD_METRICS:
            self.cells = confusion_cells(y, np.asarray(model.scores) >= model.threshold)
        elif name in RANKING_METRICS:
            self.rank = RankOrder(y, model.scores)
        else:
            raise KeyError(name)

    def __call__(self, resample: Resample) -> float:
        if self.name in THRESHOLD_METRICS:
            cells = np.bincount(self.cells, weights=resample.counts, minlength=4)
            return threshold_metric(self.name, cells)
        if self.name == "auprc":
            return self.rank.average_precision(resample.draw)
        return self.rank.roc_auc(resample.draw)


class MatchedMetric:
    """A threshold metric at a matched operating point, on resamples of the holdout.

    On each resample the threshold is re-derived from that resample for ``target``
    (the same share of negatives flagged, or the same recall) before the metric is
    taken, so two models compared this way differ only by how they rank: a model whose
    own threshold missed is not punished for it, nor one that happened to hit rewarded.
    The rule is the domain's own (:func:`inferloop.domains.metrics.threshold_at_fpr`:
    the lowest threshold flagging at most ``floor(rate x negatives)``); for recall, the
    highest threshold that keeps it. Vectorised: two ``bincount`` and two ``cumsum`` a
    round over the groups of equal scores.
    """

    def __init__(
        self, name: str, y: np.ndarray[Any, Any], scores: np.ndarray[Any, Any], target: Target
    ) -> None:
        if name not in THRESHOLD_METRICS:
            raise KeyError(name)
        self.name = name
        self.target = target
        self.rank = RankOrder(y, scores)

    def cells(self, weights: np.ndarray[Any, Any]) -> tuple[float, float, float, float] | None:
        """(tn, fn, fp, tp) at the matched threshold for examples weighted by ``weights``."""
        cum_pos, cum_neg = _cumulative(self.rank, weights)
        if not len(cum_pos) or cum_pos[-1] <= 0 or cum_neg[-1] <= 0:
            return None
        positives, negatives = float(cum_pos[-1]), float(cum_neg[-1])
        if self.target.error_class == 0:
            allowed = math.floor(self.target.rate * negatives + 1e-9)
            flagged_groups = int(np.searchsorted(cum_neg, allowed + 0.5, side="left"))
        else:
            needed = math.ceil((1.0 - self.target.rate) * positives - 1e-9)
            flagged_groups = int(np.searchsorted(cum_pos, needed - 0.5, side="left")) + 1
        tp = float(cum_pos[flagged_groups - 1]) if flagged_groups else 0.0
        fp = float(cum_neg[flagged_groups - 1]) if flagged_groups else 0.0
        return negatives - fp, positives - tp, fp, tp

    def value(self) -> float:
        """The metric on the whole holdout."""
        return self._metric(np.ones(len(self.rank.y)))

    def __call__(self, resample: Resample) -> float:
        return self._metric(resample.counts)

    def _metric(self, weights: np.ndarray[Any, Any]) -> float:
        cells = self.cells(weights)
        if cells is None:
            return math.nan
        return threshold_metric(self.name, np.asarray(cells))


class PartialAuc:
    """The mean true-positive rate over false-positive rates 0 .. ``max_fpr`` (partial
    ROC-AUC divided by ``max_fpr``: 1 is perfect), on resamples of the holdout.

    Threshold-free, and limited to the region the domain operates in: the comparison
    when the holdout has too few negatives to re-derive a threshold at the target.
    Ties are the diagonal of their group, as in ROC-AUC.
    """

    def __init__(
        self, y: np.ndarray[Any, Any], scores: np.ndarray[Any, Any], max_fpr: float
    ) -> None:
        self.max_fpr = max_fpr
        self.rank = RankOrder(y, scores)

    def value(self) -> float:
        """The figure on the whole holdout."""
        return self._area(np.ones(len(self.rank.y)))

    def __call__(self, resample: Resample) -> float:
        return self._area(resample.counts)

    def _area(self, weights: np.ndarray[Any, Any]) -> float:
        cum_pos, cum_neg = _cumulative(self.rank, weights)
        if not len(cum_pos) or cum_pos[-1] <= 0 or cum_neg[-1] <= 0:
            return math.nan
        fpr = np.r_[0.0, cum_neg / cum_neg[-1]]
        tpr = np.r_[0.0, cum_pos / cum_pos[-1]]
        x0, x1, y0, y1 = fpr[:-1], fpr[1:], tpr[:-1], tpr[1:]
        width = x1 - x0
        slope = np.divide(y1 - y0, width, out=np.zeros_like(width), where=width > 0)
        xa, xb = np.minimum(x0, self.max_fpr), np.minimum(x1, self.max_fpr)
        ya, yb = y0 + slope * (xa - x0), y0 + slope * (xb - x0)
        return float(np.sum((xb - xa) * (ya + yb)) / 2.0 / self.max_fpr)


def _cumulative(rank: RankOrder, weights: np.ndarray[Any, Any]) -> tuple[FloatArray, FloatArray]:
    """Positives and negatives at or above each group (best first), examples weighted."""
    pos = np.bincount(rank.group, weights=weights * rank.y, minlength=rank.groups)
    everyone = np.bincount(rank.group, weights=weights, minlength=rank.groups)
    return np.cumsum(pos), np.cumsum(everyone - pos)


Measure = Callable[[Resample], float]


def paired_measure_deltas(
    candidate: Measure, champion: Measure, n: int, *, rounds: int, seed: int
) -> FloatArray:
    """(candidate - champion) on ``rounds`` seeded resamples of a holdout of ``n``;
    undefined rounds dropped. The draws are those :func:`paired_deltas` makes."""
    rng = np.random.default_rng(seed)
    deltas = np.empty(rounds, dtype=np.float64)
    for i in range(rounds):
        resample = Resample(rng.integers(0, n, n), n)
        deltas[i] = candidate(resample) - champion(resample)
    return deltas[np.isfinite(deltas)]


def supports(metric: str) -> bool:
    """Whether ``metric`` has a fast form here."""
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
    if supports(metric):
        cand, champ = ResampledMetric(metric, y, candidate), ResampledMetric(metric, y, champion)
        return paired_measure_deltas(cand, champ, n, rounds=rounds, seed=seed)
    if fallback is None:
        raise KeyError(f"no fast form of {metric!r} and no fallback given")
    rng = np.random.default_rng(seed)
    deltas = np.empty(rounds, dtype=np.float64)
    cand_scores, champ_scores = np.asarray(candidate.scores), np.asarray(champion.scores)
    for i in range(rounds):
        draw = rng.integers(0, n, n)
        deltas[i] = fallback(y[draw], cand_scores[draw], candidate.threshold) - fallback(
            y[draw], champ_scores[draw], champion.threshold
        )
    return deltas[np.isfinite(deltas)]
