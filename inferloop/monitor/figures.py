"""Live figures of one version over a window of labelled events, with intervals.

Precision, recall and F1 at the version's threshold, the domain's target figure
(emails: ham flagged, the share of legitimate mail flagged; transactions: fraud
recall) and AUPRC, each with a 95 % moving-block bootstrap interval. The events are
resampled in blocks of ``block_size`` consecutive events (in time order, circularly),
not one by one: fraud comes in bursts and spam in campaigns, so neighbouring events
are alike and an interval that treats them as independent is too narrow. A window
shorter than ``MIN_BLOCKS`` blocks is resampled in shorter blocks (``n // MIN_BLOCKS``):
with one block a circular resample is the window itself, rotated, and the interval
collapses to the point estimate (a floor would then be judged on that alone). A rate
over fewer than ``MIN_CLASS_EVENTS`` events of its denominator (recall and F1 over the
positives, ham flagged over the negatives, precision over the flagged) is reported with
the widest interval, [0, 1]: one ham in a window, flagged, resamples to "100 % of ham
flagged" every time, and no floor may be judged on it.

A figure that the window cannot define (precision with nothing flagged, recall with
no positive, AUPRC with one class) is NaN, never 0: a floor check must not read "no
data" as "bad". Vectorised: every replicate is a row of event multiplicities, so one
evaluation costs a few array passes, not a Python loop per replicate.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from inferloop.domains import metrics as m

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
K = TypeVar("K", bound=Hashable)

# Blocks a resample holds at least: a window of 50 events with blocks of 50 had an
# interval of zero width (the shift case's first floor alarms: F1 0.667 [0.667, 0.667]).
MIN_BLOCKS = 10
# Events of a rate's denominator below which its interval is [0, 1] (not judged).
MIN_CLASS_EVENTS = 10

# The domain's target figure, by domain.
TARGETS = {"emails": "ham_flagged", "transactions": "fraud_recall"}
LEVEL = 0.95
# Replicates computed at once: bounds the multiplicity matrix (rows x events) in memory.
_CHUNK_CELLS = 4_000_000


@dataclass(frozen=True)
class Interval:
    """A figure and its bootstrap interval (NaN where undefined)."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class Figures:
    """One version's live figures over one window."""

    n: int
    positives: int
    flagged: int
    threshold: float
    target: str  # "ham_flagged" or "fraud_recall"
    precision: Interval
    recall: Interval
    f1: Interval
    target_value: Interval
    auprc: Interval
    block_size: int
    n_boot: int


def target_name(target: str) -> str:
    """The target figure's name for a domain (or the name itself)."""
    if target in TARGETS.values():
        return target
    if target not in TARGETS:
        raise ValueError(f"no live target for {target!r}: one of {', '.join(TARGETS)}")
    return TARGETS[target]


def _div(num: Any, den: Any) -> Any:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _rates(tp: Any, fp: Any, fn: Any, tn: Any, target: str) -> dict[str, Any]:
    precision, recall = _div(tp, tp + fp), _div(tp, tp + fn)
    f1 = _div(2 * precision * recall, precision + recall)
    target_value = recall if target == "fraud_recall" else _div(fp, fp + tn)
    return {"precision": precision, "recall": recall, "f1": f1, "target_value": target_value}


def average_precision(weights: Any, y_sorted: FloatArray, ends: Any) -> FloatArray:
    """AUPRC (sklearn's average precision) of each row of event ``weights``, the events
    sorted by score, highest first; ``ends`` are the last indices of tied scores."""
    positives = np.flatnonzero(y_sorted > 0)
    rows = np.shape(weights)[:-1]
    if not positives.size:
        return np.zeros(rows)
    # Recall steps only at the ends of the tie groups that hold a positive: sum the
    # weights between two such ends (one pass), then accumulate over those few steps.
    steps_at = np.unique(np.asarray(ends)[np.searchsorted(ends, positives)])
    starts = np.r_[0, steps_at[:-1] + 1]
    seen = np.cumsum(np.add.reduceat(weights[..., : steps_at[-1] + 1], starts, axis=-1), axis=-1)
    step_of_positive = np.searchsorted(steps_at, positives)
    first = np.r_[0, np.flatnonzero(np.diff(step_of_positive)) + 1]
    tp = np.cumsum(np.add.reduceat(weights[..., positives], first, axis=-1), axis=-1)
    precision = _div(tp, seen)
    recall = _div(tp, np.broadcast_to(tp[..., -1:], tp.shape))
    steps = np.diff(recall, axis=-1, prepend=0.0)
    return np.asarray(np.nansum(steps * precision, axis=-1), dtype=np.float64)


def _block_weights(n: int, block: int, rows: int, rng: np.random.Generator) -> Any:
    """Multiplicities of each event (time order) in ``rows`` circular moving-block
    resamples of ``n`` events: each block adds 1 over its span, as a difference array
    (counted with ``bincount`` over the flat cells: ``add.at`` is several times slower)."""
    blocks = math.ceil(n / block)
    spans = np.full(blocks, block)
    spans[-1] = n - block * (blocks - 1)  # the last block is cut to n events in all
    starts = rng.integers(0, n, size=(rows, blocks))
    stops = starts + spans
    # Each row's difference array is n + 1 cells of one flat array.
    base = (np.arange(rows) * (n + 1))[:, None]
    wrapped = stops > n
    # Spans past the end wrap round to the start.
    ups = np.concatenate([(base + starts).ravel(), np.broadcast_to(base, stops.shape)[wrapped]])
    downs = np.concatenate([(base + np.minimum(stops, n)).ravel(), (base + stops - n)[wrapped]])
    cells = rows * (n + 1)
    diff = np.bincount(ups, minlength=cells) - np.bincount(downs, minlength=cells)
    diff = diff.astype(np.int32).reshape(rows, n + 1)
    return np.cumsum(diff[:, :n], axis=1, dtype=np.int32)


def _replicates(ranked: _Ranked, w: Any, target: str) -> dict[str, Any]:
    """Each figure of each replicate, ``w``'s columns in the events' score order."""
    truth, flagged = ranked.truth, ranked.flagged
    pos, flag = truth > 0, flagged > 0
    n = w.shape[1]
    tp = w[:, flag & pos].sum(axis=1)
    fp = w[:, flag & ~pos].sum(axis=1)
    fn = w[:, ~flag & pos].sum(axis=1)
    tn = n - tp - fp - fn
    out = _rates(tp, fp, fn, tn, target)
    auprc = average_precision(w, truth, ranked.ends)
    out["auprc"] = np.where((tp + fn > 0) & (fp + tn > 0), auprc, np.nan)
    return out


def _interval(value: float, draws: FloatArray) -> Interval:
    finite = draws[np.isfinite(draws)]
    if math.isnan(value) or finite.size == 0:
        return Interval(value, math.nan, math.nan)
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return Interval(value, float(low), float(high))


@dataclass(frozen=True)
class _Ranked:
    """The events sorted by score, highest first."""

    order: Any  # time index of each rank
    truth: FloatArray
    flagged: FloatArray
    ends: Any  # the last rank of each run of tied scores

    @classmethod
    def of(cls, truth: FloatArray, score: FloatArray, threshold: float) -> _Ranked:
        order = np.argsort(-score, kind="stable")
        ranked = score[order]
        ends = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1] if len(ranked) else []
        flagged = m.decide(ranked, threshold).astype(np.float64)
        return cls(order, truth[order], flagged, np.asarray(ends, dtype=np.intp))


def live_figures(
    y: np.ndarray[Any, Any],
    scores: np.ndarray[Any, Any],
    threshold: float,
    *,
    target: str,
    block_size: int,
    n_boot: int,
    seed: int,
) -> Figures:
    """The figures of events ``y`` / ``scores`` (in time order) at ``threshold``, with
    moving-block bootstrap intervals (``n_boot`` replicates of blocks of ``block_size``).
    ``target`` is the domain (or its target figure's name)."""
    return live_figures_many(
        y, {0: (scores, threshold)}, target=target, block_size=block_size, n_boot=n_boot,
        seed=seed,
    )[0]  # fmt: skip


def live_figures_many(
    y: np.ndarray[Any, Any],
    scored: Mapping[K, tuple[np.ndarray[Any, Any], float]],
    *,
    target: str,
    block_size: int,
    n_boot: int,
    seed: int,
) -> dict[K, Figures]:
    """:func:`live_figures` of several versions' ``(scores, threshold)`` on the same
    events ``y``, by key. The resamples are drawn once for all of them: each version's
    figures are exactly what :func:`live_figures` gives it alone (the same seed draws the
    same blocks), for one draw of the multiplicities instead of one per version."""
    name = target_name(target)
    truth = np.asarray(y, dtype=np.float64)
    ranked = {
        key: _Ranked.of(truth, np.asarray(scores, dtype=np.float64), threshold)
        for key, (scores, threshold) in scored.items()
    }
    draws = _bootstrap(ranked, name, block_size=block_size, n_boot=n_boot, seed=seed)
    ones = np.ones((1, len(truth)), dtype=np.int32)
    out = {}
    for key, (scores, threshold) in scored.items():
        point = _replicates(ranked[key], ones, name)
        intervals = {k: _interval(float(v[0]), draws[key][k]) for k, v in point.items()}
        tp, fp, fn, tn = m.confusion(truth, scores, threshold)
        counts = {"precision": tp + fp, "recall": tp + fn, "f1": tp + fn, "auprc": tp + fn}
        counts["target_value"] = fp + tn if name == "ham_flagged" else tp + fn
        for figure, count in counts.items():
            if count < MIN_CLASS_EVENTS and not math.isnan(intervals[figure].value):
                intervals[figure] = Interval(intervals[figure].value, 0.0, 1.0)
        out[key] = Figures(
            n=len(truth),
            positives=tp + fn,
            flagged=tp + fp,
            threshold=float(threshold),
            target=name,
            block_size=max(1, min(block_size, len(truth) // MIN_BLOCKS)),
            n_boot=n_boot,
            **intervals,
        )
    return out


def _bootstrap(
    ranked: Mapping[K, _Ranked], target: str, *, block_size: int, n_boot: int, seed: int
) -> dict[K, dict[str, FloatArray]]:
    """Every figure of every replicate of each ranking, a chunk of replicates at a time
    (each chunk's multiplicities drawn once for all the rankings)."""
    keys = ("precision", "recall", "f1", "target_value", "auprc")
    n = len(next(iter(ranked.values())).truth) if ranked else 0
    if n == 0 or n_boot < 1:
        return {r: {k: np.empty(0) for k in keys} for r in ranked}
    rng = np.random.default_rng(seed)
    block = max(1, min(block_size, n // MIN_BLOCKS))
    rows = max(1, _CHUNK_CELLS // n)
    parts: dict[K, dict[str, list[FloatArray]]] = {r: {k: [] for k in keys} for r in ranked}
    for done in range(0, n_boot, rows):
        weights = _block_weights(n, block, min(rows, n_boot - done), rng)
        for r, one in ranked.items():
            for k, v in _replicates(one, weights[:, one.order], target).items():
                parts[r][k].append(np.asarray(v, dtype=np.float64))
    return {r: {k: np.concatenate(v) for k, v in p.items()} for r, p in parts.items()}
