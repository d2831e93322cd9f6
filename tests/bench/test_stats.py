"""The benchmark's arithmetic: percentiles, bounds, efficiency, growth, accounting."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from bench.sections.throughput import summarise
from bench.stats import (
    Accounting,
    Spread,
    efficiency,
    growth_exponent,
    harmonic_bound,
    linear_slope,
    percentile,
    percentiles,
    ratio,
    rss_drift_mb_per_hour,
    tally_accounting,
)


@pytest.mark.parametrize("q", [0, 1, 25, 50, 90, 95, 99, 99.9, 100])
def test_percentile_is_numpys_linear_definition(q: float) -> None:
    values = [float(v) for v in np.random.default_rng(7).exponential(10, size=257)]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_of_small_samples() -> None:
    assert percentile([5.0], 99) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert math.isnan(percentile([], 50))
    assert percentiles([1.0, 2.0, 3.0]) == {"p50": 2.0, "p95": 2.9, "p99": pytest.approx(2.98)}


def test_percentile_refuses_a_share_outside_0_to_100() -> None:
    with pytest.raises(ValueError, match="101"):
        percentile([1.0], 101)


def test_the_bound_of_one_process_is_the_harmonic_combination() -> None:
    # 1 / (1/30,000 + 1/60,000) = 20,000: both steps on one core, one after the other.
    assert harmonic_bound(30_000, 60_000) == pytest.approx(20_000)
    assert harmonic_bound(10.0) == 10.0
    assert harmonic_bound(30_000, 0) == 0.0


def test_efficiency_is_the_worker_over_the_bound() -> None:
    assert efficiency(16_000, 30_000, 60_000) == pytest.approx(0.8)
    assert math.isnan(efficiency(16_000, 0, 60_000))
    assert ratio(3, 4) == 0.75
    assert math.isnan(ratio(3, 0))


def test_growth_exponent_of_power_laws() -> None:
    sizes = [10_000, 100_000, 1_000_000]
    assert growth_exponent(sizes, [0.5 * n / 1000 for n in sizes]) == pytest.approx(1.0)
    assert growth_exponent(sizes, [2e-9 * n**2 for n in sizes]) == pytest.approx(2.0)
    assert growth_exponent(sizes, [3.0, 3.0, 3.0]) == pytest.approx(0.0)
    assert math.isnan(growth_exponent([10], [1.0]))


def test_slope_and_drift() -> None:
    assert linear_slope([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(2.0)
    assert math.isnan(linear_slope([1, 1], [2, 3]))
    # 100 MB -> 101 MB over an hour, sampled each minute.
    times = [60.0 * i for i in range(61)]
    assert rss_drift_mb_per_hour(times, [100 + t / 3600 for t in times]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="2 x values but 1 y"):
        linear_slope([0, 1], [1])


def test_spread_of_rounds() -> None:
    assert Spread.of([3.0, 1.0, 2.0]) == Spread(2.0, 1.0, 3.0, 3)
    assert Spread.of([]).n == 0


def test_accounting_counts_lost_duplicated_and_unexpected_ids() -> None:
    expected = Counter({"a": 1, "b": 1, "c": 2, "d": 1})
    got = Accounting.of(expected, ["a", "a", "c", "x"], ["b", "c"])
    assert got == Accounting(
        events_in=5, predictions=4, dead_letters=2, lost=1, duplicated=1, unexpected=1
    )


def test_accounting_of_aligned_counts() -> None:
    got = tally_accounting([1, 1, 2, 0], [1, 0, 3, 1], predictions=5, dead_letters=0)
    assert (got.events_in, got.lost, got.duplicated, got.unexpected) == (4, 1, 1, 1)
    with pytest.raises(ValueError, match="3 expected counts but 2"):
        tally_accounting([1, 1, 1], [1, 1], predictions=2, dead_letters=0)


def test_a_round_is_set_against_the_pipelined_loop_and_against_the_faster_loop() -> None:
    # The naive loop beat the pipelined one in this round: the efficiency is
    # against the pipelined loop (bound 20,000), the other against the naive (bound 24,000).
    worker = {
        key: {"rate": rate}
        for key, rate in (
            ("at-least-once/1", 24_000.0),
            ("exactly-once/1", 18_000.0),
            ("at-least-once/2", 36_000.0),
        )
    }
    one_round = {
        "consume": 90_000.0,
        "naive": 40_000.0,
        "pipelined": 30_000.0,
        "exactly_once": 20_000.0,
        "scoring": {"rate": 60_000.0},
        "worker": worker,
    }
    summary = summarise([one_round])
    assert summary["bound"]["median"] == pytest.approx(20_000)
    assert summary["efficiency"]["median"] == pytest.approx(1.2)
    assert summary["efficiency_best_loop"]["median"] == pytest.approx(1.0)
    assert summary["eos_over_alo"]["median"] == pytest.approx(0.75)
    assert summary["two_over_one"]["median"] == pytest.approx(1.5)
    assert summary["quix"] is None
