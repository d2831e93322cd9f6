"""Quality metrics at a decision threshold, and the ways a threshold is chosen.

The decision rule everywhere is ``score >= threshold`` means the positive class.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import beta
from sklearn.metrics import (
    average_precision_score,
    matthews_corrcoef,
    precision_recall_curve,
    roc_auc_score,
)

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def decide(scores: np.ndarray[Any, Any], threshold: float) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """The positive decisions: ``score >= threshold``."""
    return np.asarray(scores) >= threshold


def confusion(
    y: np.ndarray[Any, Any], scores: np.ndarray[Any, Any], threshold: float
) -> tuple[int, int, int, int]:
    """(true positives, false positives, false negatives, true negatives)."""
    truth = np.asarray(y).astype(bool)
    flagged = decide(scores, threshold)
    tp = int(np.count_nonzero(flagged & truth))
    fp = int(np.count_nonzero(flagged & ~truth))
    fn = int(np.count_nonzero(~flagged & truth))
    tn = int(np.count_nonzero(~flagged & ~truth))
    return tp, fp, fn, tn


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def threshold_metrics(
    y: np.ndarray[Any, Any], scores: np.ndarray[Any, Any], threshold: float
) -> dict[str, float]:
    """Precision, recall, F1, MCC, ROC-AUC, AUPRC and the false-positive rate, with counts.

    ROC-AUC and AUPRC are NaN when ``y`` holds one class only.
    """
    y = np.asarray(y)
    tp, fp, fn, tn = confusion(y, scores, threshold)
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    both_classes = 0 < int(y.sum()) < len(y)
    flagged = decide(scores, threshold)
    return {
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "mcc": float(matthews_corrcoef(y, flagged)) if len(y) else 0.0,
        "roc_auc": float(roc_auc_score(y, scores)) if both_classes else math.nan,
        "auprc": float(average_precision_score(y, scores)) if both_classes else math.nan,
        "fpr": _ratio(fp, fp + tn),
        "threshold": float(threshold),
        "n": float(len(y)),
        "positives": float(tp + fn),
        "tp": float(tp),
        "fp": float(fp),
        "fn": float(fn),
        "tn": float(tn),
    }


def threshold_at_fpr(
    y: np.ndarray[Any, Any], scores: np.ndarray[Any, Any], max_fpr: float
) -> float:
    """The lowest threshold that flags at most ``max_fpr`` of the negatives.

    The lowest such threshold catches the most positives. With no negatives every
    score passes (the threshold is 0).
    """
    negatives = np.sort(np.asarray(scores, dtype=np.float64)[np.asarray(y) == 0])[::-1]
    allowed = math.floor(max_fpr * len(negatives) + 1e-9)
    if allowed >= len(negatives):
        return 0.0
    # Just above the highest negative that must not be flagged.
    return float(np.nextafter(negatives[allowed], np.inf))


def threshold_at_recall(
    y: np.ndarray[Any, Any], scores: np.ndarray[Any, Any], min_recall: float
) -> float:
    """The threshold with the best precision among those that keep ``min_recall``.

    Ties go to the highest threshold (fewer alerts). With no positives it is 0.5.
    """
    y = np.asarray(y)
    if not y.any():
        return 0.5
    precision, recall, thresholds = precision_recall_curve(y, scores)
    # precision/recall have one more entry than thresholds (the point recall = 0).
    precision, recall = precision[:-1], recall[:-1]
    eligible = np.flatnonzero(recall >= min_recall)
    best = eligible[precision[eligible] == precision[eligible].max()]
    return float(thresholds[best.max()])


def f1_at_fpr(y: np.ndarray[Any, Any], scores: np.ndarray[Any, Any], max_fpr: float) -> float:
    """F1 at the lowest threshold on these very scores that flags at most ``max_fpr``.

    Descriptive only (the threshold is chosen on the data it is measured on).
    """
    return threshold_metrics(y, scores, threshold_at_fpr(y, scores, max_fpr))["f1"]


# A rate is judged on at least this many expected errors: 10 / target examples of the
# class it counts (2,000 ham for 0.5 % flagged, 50 fraud for 20 % missed).
EXPECTED_ERRORS = 10


@dataclass(frozen=True)
class ThresholdTarget:
    """What a threshold promises: at most ``rate`` of one class on the wrong side.

    ``error_class`` 0: the share of negatives flagged (emails: ham flagged);
    1: the share of positives missed (transactions: fraud missed, 1 - recall).
    """

    error_class: int
    rate: float

    @property
    def needed(self) -> int:
        """Examples of ``error_class`` a window needs for the rate to mean something."""
        return math.ceil(EXPECTED_ERRORS / self.rate - 1e-9)

    def describe(self) -> str:
        """The target in words."""
        if self.error_class == 0:
            return f"at most {self.rate:.2%} of negatives flagged"
        return f"at least {1 - self.rate:.0%} recall ({self.rate:.0%} of positives missed)"

    def errors(
        self, y: np.ndarray[Any, Any], scores: np.ndarray[Any, Any], threshold: float
    ) -> tuple[int, int]:
        """(examples on the wrong side, examples of ``error_class``) at ``threshold``."""
        y = np.asarray(y)
        of_class = y == self.error_class
        flagged = decide(scores, threshold)
        wrong = flagged if self.error_class == 0 else ~flagged
        return int(np.count_nonzero(wrong & of_class)), int(np.count_nonzero(of_class))


@dataclass(frozen=True)
class RealisedRate:
    """A threshold's rate of errors on some labelled data, with its 95 % interval."""

    errors: int
    of: int
    rate: float
    lower: float
    upper: float

    @classmethod
    def of_counts(cls, errors: int, of: int) -> RealisedRate:
        """The rate ``errors / of`` with its Clopper-Pearson 95 % interval."""
        if of <= 0:
            return cls(errors, of, math.nan, 0.0, 1.0)
        lower = float(beta.ppf(0.025, errors, of - errors + 1)) if errors > 0 else 0.0
        upper = float(beta.ppf(0.975, errors + 1, of - errors)) if errors < of else 1.0
        return cls(errors, of, errors / of, lower, upper)

    def as_dict(self) -> dict[str, float | int]:
        """The figures as plain values."""
        return asdict(self)


# A holdout recall whose upper 95 % bound is under this share of the calibration's
# recall is a collapse, not noise: the shift case's v5 caught 1.6 % of the new spam
# at a threshold that caught most of the calibration window's.
RECALL_COLLAPSE_SHARE = 0.5


@dataclass(frozen=True)
class RecallShortfall:
    """A threshold's recall on calibration (what it promised) against the holdout's."""

    promised: float
    holdout: RealisedRate  # positives caught, of the holdout's positives

    @classmethod
    def of(
        cls,
        cal_y: np.ndarray[Any, Any],
        cal_scores: np.ndarray[Any, Any],
        y: np.ndarray[Any, Any],
        scores: np.ndarray[Any, Any],
        threshold: float,
    ) -> RecallShortfall:
        """Recall at ``threshold`` on calibration and, with its interval, on the holdout."""
        cal_positive = np.asarray(cal_y) == 1
        promised = _ratio(
            int(np.count_nonzero(decide(cal_scores, threshold) & cal_positive)),
            int(np.count_nonzero(cal_positive)),
        )
        positive = np.asarray(y) == 1
        caught = int(np.count_nonzero(decide(scores, threshold) & positive))
        return cls(promised, RealisedRate.of_counts(caught, int(np.count_nonzero(positive))))

    @property
    def collapsed(self) -> bool:
        """Whether the holdout's recall is surely under half of what calibration promised."""
        return self.holdout.of > 0 and self.holdout.upper < RECALL_COLLAPSE_SHARE * self.promised
