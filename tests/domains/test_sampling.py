"""NegativeSubsample: every positive, a seeded share of negatives, reweighted."""

from __future__ import annotations

import io
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from inferloop.domains import TrainingError, get_domain
from inferloop.domains.sampling import NegativeSubsample, negative_sample
from inferloop.domains.training import build

TRANSACTIONS = get_domain("transactions")


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    """Small fits: OpenMP threads only cost time on a busy machine."""
    with threadpool_limits(limits=1):
        yield


def rare(n: int = 20_000, seed: int = 0) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Rows with about 2 % positives that a model can learn."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    logit = -5.0 + 2.0 * x[:, 0] - 1.5 * x[:, 1]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    return x, y


def test_every_positive_is_kept_and_negatives_carry_their_share() -> None:
    y = np.array([0] * 1000 + [1] * 10 + [0] * 990)
    keep, weights = negative_sample(y, 0.1, 3)
    assert (np.diff(keep) > 0).all(), "positions stay in their order"
    kept_y = y[keep]
    assert kept_y.sum() == 10
    assert (weights[kept_y == 1] == 1.0).all()
    assert (kept_y == 0).sum() == 199  # round(0.1 * 1990)
    negative_weights = weights[kept_y == 0]
    assert np.allclose(negative_weights, 1990 / 199)
    assert negative_weights.sum() == pytest.approx(1990)  # the negatives' total weight


def test_the_sample_is_fixed_by_the_seed() -> None:
    y = np.zeros(5000, dtype=np.int8)
    y[::97] = 1
    a, _ = negative_sample(y, 0.2, 7)
    b, _ = negative_sample(y, 0.2, 7)
    c, _ = negative_sample(y, 0.2, 8)
    assert (a == b).all()
    assert len(a) == len(c)
    assert not (a == c).all()


def test_fraction_one_is_the_wrapped_model_exactly() -> None:
    x, y = rare(3000)
    trees = HistGradientBoostingClassifier(max_iter=10, random_state=0)
    plain = clone(trees).fit(x, y).predict_proba(x)
    wrapped = NegativeSubsample(trees, negative_fraction=1.0, random_state=0).fit(x, y)
    assert (wrapped.predict_proba(x) == plain).all()
    assert wrapped.n_fitted_ == len(y)


def test_a_fit_is_deterministic_and_keeps_the_base_rate() -> None:
    x, y = rare()

    def make(seed: int) -> NegativeSubsample:
        return NegativeSubsample(LogisticRegression(), negative_fraction=0.1, random_state=seed)

    first = make(1).fit(x, y).predict_proba(x)[:, 1]
    again = make(1).fit(x, y).predict_proba(x)[:, 1]
    other = make(2).fit(x, y).predict_proba(x)[:, 1]
    assert (first == again).all()
    assert not (first == other).all()
    # Reweighting undoes the sampling: the mean score is still about the base rate,
    # where an unweighted fit on the sample would be about ten times too high.
    assert first.mean() == pytest.approx(y.mean(), rel=0.2)
    model = make(1).fit(x, y)
    assert model.n_fitted_ < 0.15 * len(y)
    assert list(model.classes_) == [0, 1]


def test_sample_weights_given_to_fit_multiply() -> None:
    x, y = rare(3000)
    seen: dict[str, Any] = {}

    class Spy(LogisticRegression):  # type: ignore[misc]
        def fit(self, x: Any, y: Any, sample_weight: Any = None) -> Any:
            seen["w"] = sample_weight
            return super().fit(x, y, sample_weight=sample_weight)

    NegativeSubsample(Spy(), negative_fraction=0.5, random_state=0).fit(
        x, y, sample_weight=np.full(len(y), 3.0)
    )
    _keep, weights = negative_sample(y, 0.5, 0)
    assert np.allclose(seen["w"], 3.0 * weights)


def test_bad_fraction_and_labels_are_refused() -> None:
    x, y = rare(500)
    with pytest.raises(ValueError, match="negative_fraction"):
        NegativeSubsample(LogisticRegression(), negative_fraction=0.0).fit(x, y)
    with pytest.raises(ValueError, match="labels"):
        NegativeSubsample(LogisticRegression()).fit(x, y + 1)


def test_tree_parameters_keep_their_pipeline_names() -> None:
    pipeline = build(TRANSACTIONS, 42, {"model__max_iter": 200, "model__max_leaf_nodes": 7})
    model = pipeline.named_steps["model"]
    assert isinstance(model, NegativeSubsample)
    assert model.estimator.max_iter == 200
    assert model.estimator.max_leaf_nodes == 7
    params = pipeline.get_params()
    assert params["model__max_iter"] == 200
    assert params["model__estimator__max_iter"] == 200
    pipeline.set_params(model__estimator__max_iter=300, model__negative_fraction=0.5)
    assert model.estimator.max_iter == 300
    assert model.negative_fraction == 0.5
    assert model.random_state == 42
    assert model.max_negatives == 200_000
    assert model.estimator.random_state == 42
    # The pipeline's repr (recorded in the recipe) shows the sampling too.
    assert "negative_fraction=0.5" in repr(pipeline)


def test_an_unknown_parameter_is_still_a_training_error() -> None:
    with pytest.raises(TrainingError, match="no_such_parameter"):
        build(TRANSACTIONS, 42, {"model__no_such_parameter": 1})


def test_a_fitted_pipeline_pickles_and_clones() -> None:
    x, y = rare(4000)
    pipeline = build(TRANSACTIONS, 5, {"model__max_iter": 10, "model__negative_fraction": 0.3})
    rows = np.hstack([x] * 6)[:, :29]
    pipeline.fit(rows, y)
    buffer = io.BytesIO()
    joblib.dump(pipeline, buffer)
    buffer.seek(0)
    loaded = joblib.load(buffer)
    assert (loaded.predict_proba(rows) == pipeline.predict_proba(rows)).all()
    copy = clone(pipeline)
    assert copy.get_params()["model__negative_fraction"] == 0.3
    assert not hasattr(copy.named_steps["model"], "estimator_")


def test_max_negatives_caps_the_sample_and_leaves_small_data_alone() -> None:
    x, y = rare(6000)
    negatives = int((y == 0).sum())
    capped = NegativeSubsample(LogisticRegression(), max_negatives=1000, random_state=0)
    capped.fit(x, y)
    assert capped.n_fitted_ == 1000 + int(y.sum())
    assert capped.fraction_ == pytest.approx(1000 / negatives)
    roomy = NegativeSubsample(LogisticRegression(), max_negatives=negatives, random_state=0)
    plain = LogisticRegression().fit(x, y).predict_proba(x)
    assert (roomy.fit(x, y).predict_proba(x) == plain).all()
    assert roomy.fraction_ == 1.0
    # The smaller of the two limits wins.
    both = NegativeSubsample(LogisticRegression(), negative_fraction=0.05, max_negatives=1000)
    assert both.fraction_for(negatives) == 0.05
    with pytest.raises(ValueError, match="max_negatives"):
        NegativeSubsample(LogisticRegression(), max_negatives=0).fit(x, y)
