"""A fitted histogram gradient-boosted tree model, compiled for scoring small batches fast.

scikit-learn's ``HistGradientBoostingClassifier.predict_proba`` walks its trees one
Python call at a time: about 9 µs a tree before any row is scored, so 7 ms a call for
the transactions model's 500 trees whether the batch holds one transaction or a hundred.
A worker scores every poll's batch, and at a modest load those batches are small, so
that fixed cost was most of each loop turn and of the latency.

:class:`CompiledTrees` copies every tree's nodes into flat arrays and walks them all in
one native loop (numba), tree by tree and row by row, in the order scikit-learn sums
them: the scores are the same floating-point numbers. Compiling checks that on probe rows
against the model's own ``predict_proba``, and a worker checks it again against the
version's golden scores before it serves (``worker.model``). The compiled form is
derived from the artifact when it is loaded; the artifact stays the pipeline.

The fitted trees are read from scikit-learn's private attributes (``_predictors``, their
``nodes`` record arrays, ``_baseline_prediction``, ``_loss``), all in
:func:`_fitted_trees`, as laid out by scikit-learn 1.9 (pinned ``<1.10`` in
pyproject.toml). Another layout is no crash: the model is not compiled, the pipeline
scores (7 ms a call for 500 trees), and :func:`fell_back` says so at WARNING once and
counts it in ``inferloop_scorer_compile_fallback_total{scorer}``.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import Counter
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from inferloop.domains.errors import NotCompilableError
from inferloop.domains.native import Kernel, check_same_scores, compile_kernel

log = logging.getLogger(__name__)

# Rows scored both ways when a model is compiled, before the compiled form is used.
PROBE_ROWS = 256

# In no registry of its own: a worker adds it to its metrics' registry.
COMPILE_FALLBACKS = Counter(
    "inferloop_scorer_compile_fallback",
    "Fitted models that did not compile (or whose compiled scores differed from "
    "scikit-learn's): the pipeline scores them",
    ["scorer"],
    registry=None,
)
_warned: set[str] = set()
_warned_lock = threading.Lock()


def fell_back(scorer: str, error: Exception) -> None:
    """Count a model that ``scorer`` ("trees", "text") could not compile; the first time
    in this process, say why at WARNING (later ones at INFO)."""
    COMPILE_FALLBACKS.labels(scorer).inc()
    with _warned_lock:
        first = scorer not in _warned
        _warned.add(scorer)
    log.log(logging.WARNING if first else logging.INFO,
            "compiled %s scorer not used, the pipeline scores: %s", scorer, error)  # fmt: skip


def _walk(x: Any, nodes: Any, out: Any) -> None:
    """Add every tree's leaf value for each row of ``x`` to ``out``, tree by tree.

    ``nodes`` is :attr:`CompiledTrees.nodes`. A leaf's ``feature`` is -1. A missing
    value (NaN fails both comparisons) goes where the split sent the training set's.
    """
    roots, feature, threshold, left, right, missing_left, value = nodes
    n = x.shape[0]
    for root in roots:
        for i in range(n):
            k = root
            f = feature[k]
            while f >= 0:
                v = x[i, f]
                if v <= threshold[k]:
                    k = left[k]
                elif v > threshold[k] or not missing_left[k]:
                    k = right[k]
                else:
                    k = left[k]
                f = feature[k]
            out[i] += value[k]


@functools.cache
def _kernel() -> Kernel:
    """:func:`_walk`, compiled on first use."""
    return compile_kernel(_walk)


@dataclass(frozen=True, eq=False)
class CompiledTrees:
    """A binary ``HistGradientBoostingClassifier``'s trees as flat node arrays.

    Node ``k`` of the concatenated trees splits on ``feature[k]`` at ``threshold[k]``
    (``<=`` goes to ``left[k]``) or, with ``feature[k] == -1``, is a leaf worth
    ``value[k]``. A row's raw score is ``baseline`` plus one leaf value per tree.
    """

    n_features: int
    baseline: float
    roots: np.ndarray[Any, np.dtype[np.int32]]
    feature: np.ndarray[Any, np.dtype[np.int32]]
    threshold: np.ndarray[Any, np.dtype[np.float64]]
    left: np.ndarray[Any, np.dtype[np.int32]]
    right: np.ndarray[Any, np.dtype[np.int32]]
    missing_left: np.ndarray[Any, np.dtype[np.bool_]]
    value: np.ndarray[Any, np.dtype[np.float64]]
    link_inverse: Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]]

    @classmethod
    def from_model(cls, model: Any) -> CompiledTrees:
        """Compile a fitted binary ``HistGradientBoostingClassifier`` on numeric features.

        Raises :class:`NotCompilableError` for anything else (several classes,
        categorical splits, a fitted preprocessor, an unknown node layout, scores that
        differ from the model's), counted by :func:`fell_back`.
        """
        try:
            return cls._compile(model)
        except NotCompilableError as exc:
            fell_back("trees", exc)
            raise

    @classmethod
    def _compile(cls, model: Any) -> CompiledTrees:
        _check_compilable(model)
        trees, baseline, link_inverse = _fitted_trees(model)
        if not trees:
            raise NotCompilableError("the model has no trees")
        sizes = np.array([len(t) for t in trees], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        if int(sizes.sum()) >= 2**31:
            raise NotCompilableError("too many nodes for 32-bit node numbers")
        try:
            nodes = np.concatenate(trees)
            is_leaf = nodes["is_leaf"].astype(bool)
            if np.any(nodes["is_categorical"][~is_leaf]):
                raise NotCompilableError("the model has categorical splits")
            offset = np.repeat(starts, sizes)
            itself = np.arange(len(nodes))
            compiled = cls(
                n_features=int(model.n_features_in_),
                baseline=baseline,
                roots=starts.astype(np.int32),
                feature=np.where(is_leaf, -1, nodes["feature_idx"]).astype(np.int32),
                threshold=np.where(is_leaf, np.inf, nodes["num_threshold"]).astype(np.float64),
                left=np.where(is_leaf, itself, nodes["left"] + offset).astype(np.int32),
                right=np.where(is_leaf, itself, nodes["right"] + offset).astype(np.int32),
                missing_left=nodes["missing_go_to_left"].astype(bool),
                value=nodes["value"].astype(np.float64),
                link_inverse=link_inverse,
            )
        except (KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
            raise NotCompilableError(f"unexpected tree layout: {exc}") from exc
        compiled.check_against(model)
        return compiled

    def check_against(self, model: Any) -> None:
        """Raise :class:`NotCompilableError` unless these trees score probe rows exactly
        as ``model.predict_proba`` does, or if the kernel fails to compile or run.

        The probe rows put every feature at one of its split thresholds, just above one,
        or missing, so that both branches and the missing-value direction are taken.
        """
        check_same_scores(
            self.positive_scores,
            model,
            self._probe_rows(),
            kernel="the tree kernel",
            source="the model's",
        )

    def _probe_rows(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        rng = np.random.default_rng(0)
        rows = rng.normal(size=(PROBE_ROWS, self.n_features))
        for f in range(self.n_features):
            cuts = self.threshold[self.feature == f]
            if cuts.size:
                rows[:, f] = rng.choice(cuts, PROBE_ROWS)
        above = rng.random(rows.shape) < 0.4
        rows[above] = np.nextafter(rows[above], np.inf)
        rows[rng.random(rows.shape) < 0.1] = np.nan
        return rows

    @property
    def nodes(self) -> tuple[np.ndarray[Any, Any], ...]:
        """The node arrays, in the order the kernel unpacks them."""
        return (
            self.roots, self.feature, self.threshold, self.left, self.right,
            self.missing_left, self.value,
        )  # fmt: skip

    @property
    def n_trees(self) -> int:
        """How many trees the model sums."""
        return len(self.roots)

    @property
    def name(self) -> str:
        """``compiled trees (500)``: what scores, as a worker's log names it."""
        return f"compiled trees ({self.n_trees})"

    def __call__(self, rows: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
        """:meth:`positive_scores`: compiled trees are a ``DomainSpec`` scorer."""
        return self.positive_scores(rows)

    def raw_scores(self, x: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
        """The model's raw (log-odds) score of each row of ``x``."""
        rows = np.ascontiguousarray(x, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise ValueError(
                f"expected rows of {self.n_features} features, got an array of shape {rows.shape}"
            )
        out = np.full(rows.shape[0], self.baseline, dtype=np.float64)
        if rows.shape[0]:
            _kernel()(rows, self.nodes, out)
        return out

    def positive_scores(self, x: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
        """The positive class's probability for each row: ``predict_proba(x)[:, 1]``."""
        return np.asarray(self.link_inverse(self.raw_scores(x)), dtype=np.float64)


def _fitted_trees(model: Any) -> tuple[list[Any], float, Callable[[Any], Any]]:
    """Every private attribute of a fitted model this module reads: each tree's node
    records, the baseline raw score and the inverse link; :class:`NotCompilableError`
    when scikit-learn no longer lays them out so."""
    try:
        trees = [iteration[0].nodes for iteration in model._predictors]
        baseline = float(np.ravel(model._baseline_prediction)[0])
        link_inverse = model._loss.link.inverse
    except (AttributeError, TypeError, IndexError, ValueError) as exc:
        raise NotCompilableError(f"unexpected fitted model layout: {exc!r}") from exc
    if not callable(link_inverse) or not all(isinstance(t, np.ndarray) for t in trees):
        raise NotCompilableError("unexpected fitted model layout: nodes or link of another kind")
    return trees, baseline, link_inverse


def _check_compilable(model: Any) -> None:
    """Raise :class:`NotCompilableError` unless ``model`` is a form this module handles."""
    if not isinstance(model, HistGradientBoostingClassifier):
        raise NotCompilableError(f"not a HistGradientBoostingClassifier: {type(model).__name__}")
    try:
        check_is_fitted(model)
    except NotFittedError as exc:
        raise NotCompilableError("the model is not fitted") from exc
    if getattr(model, "n_trees_per_iteration_", None) != 1 or len(model.classes_) != 2:
        raise NotCompilableError("only a two-class model compiles")
    categorical = getattr(model, "is_categorical_", None)
    if categorical is not None and np.any(categorical):
        raise NotCompilableError("the model has categorical features")
    if getattr(model, "_preprocessor", None) is not None:  # read where it may be absent
        raise NotCompilableError("the model has a fitted preprocessor")
