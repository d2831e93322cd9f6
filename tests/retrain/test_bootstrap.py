"""The weighted metrics of the paired bootstrap agree with scikit-learn's and the domain's."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from inferloop.domains import get_domain
from inferloop.domains.metrics import ThresholdTarget, threshold_at_fpr, threshold_metrics
from inferloop.retrain.bootstrap import (
    MatchedMetric,
    ModelScores,
    PartialAuc,
    RankOrder,
    Resample,
    ResampledMetric,
    paired_deltas,
)


def _data(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(np.int8)
    # Rounded, so that runs of equal scores (ties) occur.
    scores = np.round(np.clip(0.3 * y + rng.random(n) * 0.8, 0, 1), 2)
    return y, scores


@pytest.mark.parametrize("domain", ["emails", "transactions"])
def test_the_whole_holdout_reproduces_the_domain_metrics(domain: str) -> None:
    y, scores = _data()
    expected = get_domain(domain).metrics(y, scores, 0.5)
    everyone = Resample(np.arange(len(y)), len(y))
    for name in ("precision", "recall", "f1", "fpr", "mcc", "auprc", "roc_auc"):
        got = ResampledMetric(name, y, ModelScores(scores, 0.5))(everyone)
        assert got == pytest.approx(expected[name], abs=1e-12), name


def test_a_resample_scores_as_sklearn_with_its_counts_as_weights() -> None:
    y, scores = _data(seed=3)
    rank = RankOrder(y, scores)
    rng = np.random.default_rng(7)
    for _ in range(5):
        draw = rng.integers(0, len(y), len(y))
        counts = np.bincount(draw, minlength=len(y)).astype(float)
        assert rank.average_precision(draw) == pytest.approx(
            average_precision_score(y, scores, sample_weight=counts), abs=1e-12
        )
        assert rank.roc_auc(draw) == pytest.approx(
            roc_auc_score(y, scores, sample_weight=counts), abs=1e-12
        )


def test_a_model_against_itself_has_zero_deltas() -> None:
    y, scores = _data()
    same = ModelScores(scores, 0.5)
    deltas = paired_deltas("auprc", y, same, same, rounds=50, seed=1)
    assert len(deltas) == 50
    assert np.all(deltas == 0.0)


def test_deltas_are_seeded_and_the_fallback_agrees() -> None:
    y, scores = _data()
    rng = np.random.default_rng(5)
    worse = ModelScores(rng.random(len(y)), 0.5)  # scores that know nothing
    better = ModelScores(scores, 0.5)
    first = paired_deltas("f1", y, better, worse, rounds=40, seed=11)
    again = paired_deltas("f1", y, better, worse, rounds=40, seed=11)
    spec = get_domain("emails")
    slow = paired_deltas(
        "custom",
        y,
        better,
        worse,
        rounds=40,
        seed=11,
        fallback=lambda yy, ss, t: spec.metrics(yy, ss, t)["f1"],
    )
    assert np.array_equal(first, again)
    assert first.mean() > 0
    # The fallback resamples indices drawn from the same generator: the same rounds.
    assert slow == pytest.approx(first, abs=1e-12)


@pytest.mark.parametrize("rate", [0.005, 0.05, 0.2])
def test_the_matched_point_is_the_domains_threshold_rule_on_the_same_data(rate: float) -> None:
    y, scores = _data(n=4000, seed=5)
    expected = threshold_metrics(y, scores, threshold_at_fpr(y, scores, rate))
    matched = MatchedMetric("f1", y, scores, ThresholdTarget(0, rate))
    assert matched.value() == pytest.approx(expected["f1"], abs=1e-12)
    # A resample: the rule applied to the drawn examples (each as often as drawn).
    draw = np.random.default_rng(2).integers(0, len(y), len(y))
    on_draw = threshold_metrics(
        y[draw], scores[draw], threshold_at_fpr(y[draw], scores[draw], rate)
    )
    assert matched(Resample(draw, len(y))) == pytest.approx(on_draw["f1"], abs=1e-12)


def test_the_matched_recall_point_keeps_the_recall() -> None:
    y, scores = _data(n=4000, seed=5)
    assert MatchedMetric("recall", y, scores, ThresholdTarget(1, 0.2)).value() >= 0.8


def test_partial_auc_over_every_rate_is_roc_auc_and_a_perfect_ranking_scores_one() -> None:
    y, scores = _data(seed=4)
    assert PartialAuc(y, scores, 1.0).value() == pytest.approx(roc_auc_score(y, scores))
    assert PartialAuc(y, y.astype(float), 0.02).value() == pytest.approx(1.0)
