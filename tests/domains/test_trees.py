"""CompiledTrees: the same scores as scikit-learn's predict_proba, bit for bit."""

from __future__ import annotations

import logging
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from inferloop.domains import get_domain, trees
from inferloop.domains.errors import NotCompilableError
from inferloop.domains.sampling import NegativeSubsample
from inferloop.domains.spec import PipelineScorer
from inferloop.domains.transactions import ROW_COLUMNS
from inferloop.domains.trees import CompiledTrees

TRANSACTIONS = get_domain("transactions")


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    """Small fits: OpenMP threads only cost time on a busy machine."""
    with threadpool_limits(limits=1):
        yield


Array = np.ndarray[Any, Any]


def with_gaps(n: int, features: int, seed: int) -> tuple[Array, Array]:
    """Learnable rows where two features are often missing, so that some splits send
    missing values left and others right."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    logit = -2.0 + 2.0 * x[:, 0] - 1.5 * x[:, 1] + np.sin(3 * x[:, 2])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    x[rng.random(n) < 0.2, 1] = np.nan
    # Missing where the label is likely positive: the learnt direction differs by split.
    x[(rng.random(n) < 0.3) & (y == 1), 3] = np.nan
    return x, y


def hostile(x: np.ndarray[Any, Any], seed: int) -> np.ndarray[Any, Any]:
    """``x`` with NaN, infinities and values beyond every threshold sprinkled in."""
    rng = np.random.default_rng(seed)
    out = x.copy()
    for value in (np.nan, np.inf, -np.inf, 1e300, -1e300):
        out[rng.random(out.shape) < 0.03] = value
    return out


def fitted_trees(x: Array, y: Array) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(max_iter=60, max_leaf_nodes=15, random_state=0).fit(x, y)


def test_scores_are_scikit_learns_exactly_with_missing_and_infinite_values() -> None:
    x, y = with_gaps(6000, 6, seed=1)
    model = fitted_trees(x, y)
    nodes = np.concatenate([p[0].nodes for p in model._predictors])
    splits = nodes[nodes["is_leaf"] == 0]
    assert splits["missing_go_to_left"].any()
    assert not splits["missing_go_to_left"].all()
    compiled = CompiledTrees.from_model(model)
    assert compiled.n_trees == 60
    for rows in (x, hostile(x, seed=2)):
        want = model.predict_proba(rows)[:, 1]
        assert np.array_equal(compiled.positive_scores(rows), want)
        assert np.array_equal(compiled.raw_scores(rows), model.decision_function(rows))


def test_one_row_an_empty_batch_and_non_contiguous_rows_score_like_the_model() -> None:
    x, y = with_gaps(3000, 4, seed=3)
    model = fitted_trees(x, y)
    compiled = CompiledTrees.from_model(model)
    assert np.array_equal(compiled.positive_scores(x[:1]), model.predict_proba(x[:1])[:, 1])
    assert compiled.positive_scores(x[:0]).shape == (0,)
    wide = np.repeat(x, 2, axis=1)[:, ::2]  # a strided view, as a column slice gives
    assert not wide.flags.c_contiguous
    assert np.array_equal(compiled.positive_scores(wide), model.predict_proba(x)[:, 1])


def test_rows_of_the_wrong_width_are_refused_with_the_expected_width() -> None:
    x, y = with_gaps(2000, 4, seed=4)
    compiled = CompiledTrees.from_model(fitted_trees(x, y))
    with pytest.raises(ValueError, match="4 features"):
        compiled.positive_scores(x[:, :3])
    with pytest.raises(ValueError, match="4 features"):
        compiled.positive_scores(x[0])


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (LogisticRegression(), "not a HistGradientBoostingClassifier"),
        (HistGradientBoostingClassifier(max_iter=5), "not fitted"),
        (HistGradientBoostingClassifier(max_iter=5, categorical_features=[0]), "categorical"),
    ],
)
def test_models_of_another_form_do_not_compile(model: Any, reason: str) -> None:
    x, y = with_gaps(2000, 4, seed=5)
    if "not fitted" not in reason:
        x = np.nan_to_num(x)
        x[:, 0] = np.floor(np.abs(x[:, 0]) * 3)  # small integers: valid categories
        model.fit(x, y)
    with pytest.raises(NotCompilableError, match=reason):
        CompiledTrees.from_model(model)


def test_a_model_of_three_classes_does_not_compile() -> None:
    x, y = with_gaps(2000, 4, seed=6)
    y = y + (x[:, 2] > 1)
    model = HistGradientBoostingClassifier(max_iter=5).fit(x, y)
    with pytest.raises(NotCompilableError, match="two-class"):
        CompiledTrees.from_model(model)


def transactions_rows(n: int, seed: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(ROW_COLUMNS)))
    y = (x[:, 0] + 0.5 * rng.normal(size=n) > 2.2).astype(np.int8)
    return x, y


def test_the_transactions_pipeline_is_scored_compiled_first_then_by_itself() -> None:
    x, y = transactions_rows(8000, seed=7)
    pipeline = TRANSACTIONS.build_pipeline(seed=0).set_params(
        model__max_iter=40, model__max_negatives=3000
    )
    pipeline.fit(x, y)
    assert pipeline.named_steps["model"].fraction_ < 1.0  # the subsampled, reweighted fit
    compiled, plain = TRANSACTIONS.scorers(pipeline)
    assert isinstance(compiled, CompiledTrees)
    assert compiled.name == "compiled trees (40)"
    assert isinstance(plain, PipelineScorer)
    rows = hostile(x[:500], seed=8)
    assert np.array_equal(compiled(rows), plain(rows))
    assert np.array_equal(plain(rows), pipeline.predict_proba(rows)[:, 1])


def test_a_transactions_pipeline_that_does_not_compile_is_scored_by_itself() -> None:
    x, y = transactions_rows(3000, seed=9)
    others = [
        Pipeline(
            [("scale", StandardScaler()), ("model", HistGradientBoostingClassifier(max_iter=5))]
        ),
        Pipeline([("model", NegativeSubsample(LogisticRegression()))]),
    ]
    for pipeline in others:
        pipeline.fit(x, y)
        (only,) = TRANSACTIONS.scorers(pipeline)
        assert isinstance(only, PipelineScorer)
        assert np.array_equal(only(x[:50]), pipeline.predict_proba(x[:50])[:, 1])


def test_a_compiled_form_that_disagrees_with_its_model_or_fails_is_refused() -> None:
    x, y = with_gaps(2000, 4, seed=10)
    model = fitted_trees(x, y)
    compiled = CompiledTrees.from_model(model)
    compiled.check_against(model)
    off = replace(compiled, baseline=compiled.baseline + 1e-3)
    with pytest.raises(NotCompilableError, match="differ from the model's by"):
        off.check_against(model)
    untypable = replace(compiled, feature=compiled.feature.astype(np.float64))
    with pytest.raises(NotCompilableError, match="the tree kernel failed"):
        untypable.check_against(model)


def fallbacks() -> float:
    return float(trees.COMPILE_FALLBACKS.labels("trees")._value.get())


def test_a_fitted_layout_scikit_learn_changed_falls_back_to_the_pipeline_counted_and_said_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    x, y = transactions_rows(3000, seed=11)
    pipeline = TRANSACTIONS.build_pipeline(seed=0).set_params(model__max_iter=5)
    pipeline.fit(x, y)
    model = pipeline.named_steps["model"].estimator_
    want = pipeline.predict_proba(x[:50])[:, 1]
    real = model._predictors
    monkeypatch.setattr(trees, "_warned", set())
    before = fallbacks()
    with caplog.at_level(logging.INFO, logger="inferloop.domains.trees"):
        # As if a release renamed the trees' node records...
        model._predictors = [[SimpleNamespace(records=p[0].nodes)] for p in real]
        (first,) = TRANSACTIONS.scorers(pipeline)
        # ... or its loss object.
        model._predictors, loss = real, model._loss
        del model._loss
        (second,) = TRANSACTIONS.scorers(pipeline)
        model._loss = loss
    assert isinstance(first, PipelineScorer)
    assert isinstance(second, PipelineScorer)
    assert np.array_equal(second(x[:50]), want)
    assert fallbacks() == before + 2
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == trees.__name__]
    assert [level for level, _ in said] == [logging.WARNING, logging.INFO]
    assert "nodes" in said[0][1]
    assert "_loss" in said[1][1]
