"""Pure arithmetic of the benchmarks: percentiles, bounds, ratios, growth and drift.

Nothing here measures anything; every function is a plain computation on figures, so
the unit tests in ``tests/bench`` can check them exactly.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PERCENTILES = (50.0, 95.0, 99.0)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, linear between closest ranks.

    The same definition as numpy's default (``method="linear"``); NaN for no values.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is not within 0..100")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def percentiles(values: Sequence[float], qs: Iterable[float] = PERCENTILES) -> dict[str, float]:
    """``{"p50": ..., "p95": ..., "p99": ...}`` of ``values`` (keys without ``.0``)."""
    return {f"p{q:g}": percentile(values, q) for q in qs}


def harmonic_bound(*rates: float) -> float:
    """The rate of doing each of several steps, one after the other, on one core:
    ``1 / (1/r1 + 1/r2 + ...)``. A zero rate makes the bound zero."""
    if any(r <= 0 for r in rates):
        return 0.0
    return 1.0 / sum(1.0 / r for r in rates)


def efficiency(worker_rate: float, pass_through_rate: float, scoring_rate: float) -> float:
    """The worker's rate over the one-process bound
    ``1 / (1/pass-through + 1/offline scoring)`` measured in the same run."""
    bound = harmonic_bound(pass_through_rate, scoring_rate)
    return worker_rate / bound if bound > 0 else math.nan


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, NaN when the denominator is not positive."""
    return numerator / denominator if denominator > 0 else math.nan


def growth_exponent(sizes: Sequence[float], seconds: Sequence[float]) -> float:
    """``k`` in ``seconds ~ c * size**k``: the least-squares slope of log(time) on
    log(size). 1.0 is linear growth; NaN with fewer than two distinct sizes."""
    pairs = [(math.log(n), math.log(t)) for n, t in zip(sizes, seconds, strict=True) if n > 0 < t]
    if len({x for x, _ in pairs}) < 2:
        return math.nan
    return linear_slope([x for x, _ in pairs], [y for _, y in pairs])


def linear_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The least-squares slope of ``ys`` on ``xs`` (NaN when ``xs`` do not vary)."""
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} x values but {len(ys)} y values")
    if len(xs) < 2:
        return math.nan
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        return math.nan
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx


@dataclass(frozen=True)
class Spread:
    """The median of repeated measurements and their range."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        """The spread of ``values`` (NaN everywhere for none)."""
        if not values:
            return cls(math.nan, math.nan, math.nan, 0)
        return cls(statistics.median(values), min(values), max(values), len(values))


@dataclass(frozen=True)
class Accounting:
    """Every id that went in, against every id that came out (predictions + dead letters)."""

    events_in: int
    predictions: int
    dead_letters: int
    lost: int
    duplicated: int
    unexpected: int

    @classmethod
    def of(
        cls,
        expected: Mapping[str, int],
        predicted: Iterable[str],
        dead_lettered: Iterable[str],
    ) -> Accounting:
        """Count ``expected`` ids (id -> times sent) against the ids found in the output.

        An id sent ``n`` times must come out ``n`` times in all: fewer is lost, more is
        duplicated. Ids that were never sent are counted apart (``unexpected``).
        """
        out = Counter(predicted)
        predictions = sum(out.values())
        letters = Counter(dead_lettered)
        dead = sum(letters.values())
        out.update(letters)
        lost = sum(max(n - out.get(key, 0), 0) for key, n in expected.items())
        duplicated = sum(max(out[key] - n, 0) for key, n in expected.items() if key in out)
        unexpected = sum(n for key, n in out.items() if key not in expected)
        return cls(sum(expected.values()), predictions, dead, lost, duplicated, unexpected)


def rss_drift_mb_per_hour(times_s: Sequence[float], rss_mb: Sequence[float]) -> float:
    """How fast resident memory grows, from a least-squares line through the samples."""
    return linear_slope(times_s, rss_mb) * 3600.0


def tally_accounting(
    expected: Any, got: Any, predictions: int, dead_letters: int, unexpected: int = 0
) -> Accounting:
    """:class:`Accounting` from per-id counts aligned by position (id ``n`` at index ``n``,
    numpy arrays or sequences): how many times each id was sent, and came out. Output of
    an id that was never sent is ``unexpected``."""
    want = np.asarray(expected, dtype=np.int64)
    have = np.asarray(got, dtype=np.int64)
    if want.shape != have.shape:
        raise ValueError(f"{want.size} expected counts but {have.size} output counts")
    return Accounting(
        events_in=int(want.sum()),
        predictions=predictions,
        dead_letters=dead_letters,
        lost=int(np.maximum(want - have, 0).sum()),
        duplicated=int(np.maximum(have - want, 0)[want > 0].sum()),
        unexpected=unexpected + int(have[want == 0].sum()),
    )
