"""The fraud-model bench's pieces that decide its figures: the time-of-day column, the
paired bootstrap of the AUPRC gain, and the forward folds' shape."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from bench.fraud_model import CANDIDATES, SCORED_BLOCKS, paired_bootstrap

# The credit-card data's epoch (2013-09-01 00:00 UTC) plus its Time column.
EPOCH = datetime(2013, 9, 1, tzinfo=UTC).timestamp()


def test_time_of_day_is_time_modulo_a_day_on_known_rows() -> None:
    rows = np.arange(8, dtype=np.float64).reshape(4, 2)
    times = EPOCH + np.array([0.0, 86_399.0, 86_400.0, 90_000.5])
    with_time = CANDIDATES["today+tod"].features(rows, times)
    assert with_time.shape == (4, 3)
    np.testing.assert_array_equal(with_time[:, :2], rows)
    np.testing.assert_array_equal(with_time[:, 2], [0.0, 86_399.0, 0.0, 3_600.5])
    assert CANDIDATES["today"].features(rows, times) is rows


def test_the_paired_bootstrap_sees_no_gain_between_equal_models_and_one_for_a_better() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(2_000) < 0.05).astype(np.int8)
    noisy = y + rng.normal(0.0, 0.8, len(y))
    same = paired_bootstrap(y, noisy, noisy, resamples=200, seed=1)
    assert same["p5"] == same["p95"] == 0.0
    better = paired_bootstrap(y, y + rng.normal(0.0, 0.2, len(y)), noisy, resamples=200, seed=1)
    assert better["p5"] > 0.0


def test_today_as_a_candidate_is_todays_tree_model_with_more_iterations_to_read() -> None:
    from inferloop.domains import get_domain

    built = get_domain("transactions").build_pipeline(0).named_steps["model"].get_params()
    candidate = CANDIDATES["today"].boosting(0).get_params()
    differs = {k for k in built if k != "estimator" and built[k] != candidate.get(k)}
    assert differs == {"max_iter", "estimator__max_iter"}
    assert SCORED_BLOCKS == (3, 4)
