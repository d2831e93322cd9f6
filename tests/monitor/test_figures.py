"""Live figures: the project's own metrics, intervals from blocks of consecutive events."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from inferloop.domains.metrics import threshold_metrics
from inferloop.monitor.figures import Figures, _block_weights, live_figures, live_figures_many


def _events(seed: int, n: int, prevalence: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    # Rounded, so that many scores tie (as a tree ensemble's do).
    scores = np.round(1 / (1 + np.exp(-(rng.normal(size=n) + 1.5 * (2 * y - 1)))), 2)
    return y, scores


@pytest.mark.parametrize(("domain", "target"), [("emails", "fpr"), ("transactions", "recall")])
def test_the_figures_are_the_projects_own(domain: str, target: str) -> None:
    y, scores = _events(0, 3000, 0.1)
    figures = live_figures(y, scores, 0.6, target=domain, block_size=20, n_boot=50, seed=0)
    offline = threshold_metrics(y, scores, 0.6)
    assert figures.precision.value == pytest.approx(offline["precision"])
    assert figures.recall.value == pytest.approx(offline["recall"])
    assert figures.f1.value == pytest.approx(offline["f1"])
    assert figures.target_value.value == pytest.approx(offline[target])
    assert figures.auprc.value == pytest.approx(average_precision_score(y, scores))
    assert (figures.n, figures.positives) == (3000, int(y.sum()))
    for interval in (figures.precision, figures.recall, figures.f1, figures.auprc):
        assert interval.low <= interval.value <= interval.high


def _width(figures: Figures) -> float:
    return figures.recall.high - figures.recall.low


def test_bursts_widen_the_interval() -> None:
    # The positives come in bursts of 25 in a row: a recall interval from single
    # events treats them as independent and is too narrow; blocks of 50 see the bursts.
    rng = np.random.default_rng(1)
    n = 20_000
    y = np.zeros(n, dtype=int)
    for start in rng.choice(n // 25, size=16, replace=False) * 25:
        y[start : start + 25] = 1
    # Each burst is caught whole or missed whole.
    caught = np.repeat(rng.random(n // 25) < 0.7, 25)
    scores = np.where(y == 1, np.where(caught, 0.9, 0.1), rng.random(n) * 0.5)
    single = live_figures(y, scores, 0.5, target="transactions", block_size=1, n_boot=300, seed=0)
    blocks = live_figures(y, scores, 0.5, target="transactions", block_size=50, n_boot=300, seed=0)
    assert _width(blocks) > 2 * _width(single)


def test_what_a_window_cannot_define_is_nan_not_zero() -> None:
    y = np.zeros(100, dtype=int)
    scores = np.full(100, 0.1)
    figures = live_figures(y, scores, 0.5, target="transactions", block_size=10, n_boot=20, seed=0)
    assert math.isnan(figures.precision.value)
    assert math.isnan(figures.recall.value)
    assert math.isnan(figures.auprc.value)
    empty = live_figures(y[:0], scores[:0], 0.5, target="emails", block_size=10, n_boot=20, seed=0)
    assert empty.n == 0
    assert math.isnan(empty.f1.value)


def test_each_resample_takes_n_events_in_blocks() -> None:
    w = _block_weights(103, 10, 40, np.random.default_rng(0))
    assert w.shape == (40, 103)
    assert (w.sum(axis=1) == 103).all()
    # A single block (blocks as large as the data) is a rotation: every event once.
    assert (_block_weights(50, 50, 5, np.random.default_rng(0)) == 1).all()


def test_an_unknown_target_is_refused() -> None:
    y, scores = _events(2, 10, 0.5)
    with pytest.raises(ValueError, match="target"):
        live_figures(y, scores, 0.5, target="sms", block_size=5, n_boot=5, seed=0)


def _block_weights_by_add_at(n: int, block: int, rows: int, rng: np.random.Generator) -> Any:
    """The multiplicities as first written (``np.add.at``): the reference."""
    blocks = math.ceil(n / block)
    spans = np.full(blocks, block)
    spans[-1] = n - block * (blocks - 1)
    starts = rng.integers(0, n, size=(rows, blocks))
    stops = starts + spans
    row = np.broadcast_to(np.arange(rows)[:, None], starts.shape)
    diff = np.zeros((rows, n + 1), dtype=np.int32)
    np.add.at(diff, (row, starts), 1)
    np.add.at(diff, (row, np.minimum(stops, n)), -1)
    wrapped = stops > n
    np.add.at(diff, (row[wrapped], 0), 1)
    np.add.at(diff, (row[wrapped], stops[wrapped] - n), -1)
    return np.cumsum(diff[:, :n], axis=1, dtype=np.int32)


@pytest.mark.parametrize(
    ("n", "block", "rows"), [(1, 1, 3), (7, 50, 4), (103, 10, 40), (5, 2, 9), (4000, 50, 200)]
)
def test_the_multiplicities_are_the_reference_ones(n: int, block: int, rows: int) -> None:
    fast = _block_weights(n, block, rows, np.random.default_rng(3))
    reference = _block_weights_by_add_at(n, block, rows, np.random.default_rng(3))
    assert fast.dtype == reference.dtype
    np.testing.assert_array_equal(fast, reference)


def test_versions_evaluated_together_get_exactly_their_figures_alone() -> None:
    y, first = _events(4, 5000, 0.05)
    _, second = _events(5, 5000, 0.05)
    # More replicates than one chunk of 5,000 events holds: the draw spans chunks.
    kwargs: dict[str, Any] = {"target": "transactions", "block_size": 50, "n_boot": 900, "seed": 0}
    together = live_figures_many(y, {"a": (first, 0.6), "b": (second, 0.4)}, **kwargs)
    for key, (scores, threshold) in {"a": (first, 0.6), "b": (second, 0.4)}.items():
        alone = live_figures(y, scores, threshold, **kwargs)
        assert repr(together[key]) == repr(alone)


def test_a_window_of_one_block_still_has_an_interval() -> None:
    # 50 events and blocks of 50: one circular block is the window itself, rotated,
    # so every resample gave the point estimate (an interval of zero width, on which a
    # floor was judged). Shorter blocks leave a real interval.
    y, scores = _events(3, 50, 0.4)
    figures = live_figures(y, scores, 0.5, target="emails", block_size=50, n_boot=200, seed=0)
    assert figures.f1.high - figures.f1.low > 0.1
    assert figures.f1.low <= figures.f1.value <= figures.f1.high


def test_one_flagged_ham_in_a_window_is_not_a_bound_on_ham_flagged() -> None:
    # 50 spam and one ham, the ham flagged: every resample holding the ham says 100 %
    # of ham flagged, an interval of [1, 1] on which a floor of 2 % would alarm.
    y = np.r_[np.ones(50, dtype=int), 0]
    scores = np.r_[np.linspace(0.1, 0.9, 50), 0.8]
    figures = live_figures(y, scores, 0.5, target="emails", block_size=50, n_boot=200, seed=0)
    assert figures.target_value.value == 1.0
    assert (figures.target_value.low, figures.target_value.high) == (0.0, 1.0)
    # The positives are enough to bound recall and F1.
    assert figures.recall.high - figures.recall.low < 1.0
