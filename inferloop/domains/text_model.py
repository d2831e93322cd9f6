"""A fitted hashed-token linear text model, compiled for scoring small batches fast.

The emails pipeline hashes tokens of three columns of a row (words, header tokens,
character n-grams), weights each block by TF-IDF, stacks the blocks and scores them
with a logistic regression. Through scikit-learn that is a ``ColumnTransformer`` of
three pipelines: 3 ms of validation, dispatch and sparse-matrix building a call before
any token is counted, so most of the cost of a small batch.

:class:`CompiledTextModel` keeps the fitted pieces (each block's :class:`HashedTokens`,
its IDF weights and norm, the regression's coefficients) and scores a batch with the
token counts' arrays and one native loop a block (numba) that weighs, normalises and
sums each row's entries in the order scikit-learn does, so the scores are the same
floating-point numbers. Compiling checks that on probe rows against the pipeline's own
``predict_proba``, and a worker checks it again against the version's golden scores
before it serves (``worker.model``). The artifact stays the pipeline.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from inferloop.domains.errors import NotCompilableError
from inferloop.domains.hashing import HashedTokens
from inferloop.domains.native import Kernel, check_same_scores, compile_kernel
from inferloop.domains.trees import fell_back

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
# Rows scored both ways when a model is compiled, before the compiled form is used.
PROBE_ROWS = 256
_PROBE_WORDS = (
    "free", "FREE", "Free!!!", "win", "£1000", "fr33", "v1agra", "click_here", "42", "4.2",
    "café", "CAFÉ", "naïve", "Ångström", "e\u0301tude", "straße", "İstanbul", "日本語",
    "テキスト", "ok_go", "a", "zz", "$$$", ":-)", "from:example.com", "ct:text/html",
    "\u00a0", "\t", "\n\n", "  ", "\u2003",
)  # fmt: skip


def _weigh(block: Any, table: Any, options: Any, scores: Any) -> None:
    """Weigh one block's token counts as its TF-IDF step does, and add each entry's
    product with the model's coefficient to its row's score, in the entries' order.

    ``block`` is (indptr, columns, weights): CSR arrays, the weights (term frequencies
    on entry) replaced in place. ``table`` holds each of the model's features' IDF
    weight and coefficient side by side (one cache line read for both, where two
    arrays of eight and sixteen megabytes cost two misses an entry). ``options`` is
    (use the IDF, normalise to unit length, where the block's columns start among the
    model's).
    """
    indptr, columns, weights = block
    use_idf, l2, offset = options
    for i in range(len(indptr) - 1):
        begin, end = indptr[i], indptr[i + 1]
        if use_idf:
            # The product is exact in the table's precision (at least the IDF's), so
            # stored in the weights' it is rounded once, as scikit-learn rounds it.
            for j in range(begin, end):
                weights[j] = weights[j] * table[offset + columns[j], 0]
        if l2:
            # As scikit-learn's normalize: squares in the weights' precision, summed
            # in double precision; an empty row stays as it is.
            total = 0.0
            for j in range(begin, end):
                total += weights[j] * weights[j]
            if total != 0.0:
                total = np.sqrt(total)
                for j in range(begin, end):
                    weights[j] = weights[j] / total
        # In the scores' precision: the coefficients are in it, and the weights are no
        # wider.
        for j in range(begin, end):
            scores[i] += weights[j] * table[offset + columns[j], 1]


@functools.cache
def _kernel() -> Kernel:
    """:func:`_weigh`, compiled on first use."""
    return compile_kernel(_weigh)


@dataclass(frozen=True, eq=False)
class TokenBlock:
    """One hashed-token block of the model's features: which column of a row it reads,
    how it counts tokens and how it weighs them, and where its features start."""

    column: int
    tokens: HashedTokens
    sublinear_tf: bool
    idf: np.ndarray[Any, Any] | None
    l2: bool
    offset: int


@dataclass(frozen=True, eq=False)
class CompiledTextModel:
    """A binary logistic regression over stacked blocks of TF-IDF-weighted hashed tokens.

    ``coef`` is in the precision scikit-learn sums the products in: the wider of the
    stacked features' and the fitted coefficients' (float32 for a model fitted on
    float32 features by a solver that keeps them, float64 for liblinear's).
    """

    blocks: tuple[TokenBlock, ...]
    coef: np.ndarray[Any, Any]
    intercept: np.ndarray[Any, Any]
    n_columns: int
    # Each feature's (IDF weight, coefficient), in ``coef``'s precision: see _weigh.
    table: np.ndarray[Any, Any]

    @classmethod
    def from_pipeline(cls, pipeline: Any) -> CompiledTextModel:
        """Compile a fitted ``Pipeline([ColumnTransformer of token blocks, LogisticRegression])``.

        A block is a :class:`HashedTokens`, alone or followed by a
        ``TfidfTransformer``, on one column. Raises :class:`NotCompilableError` for
        anything else (other steps, a dense or weighted stack, an L1 norm, several
        classes) and when the compiled scores differ from the pipeline's, counted by
        :func:`~inferloop.domains.trees.fell_back`. Only public fitted attributes are
        read.
        """
        try:
            return cls._compile(pipeline)
        except NotCompilableError as exc:
            fell_back("text", exc)
            raise

    @classmethod
    def _compile(cls, pipeline: Any) -> CompiledTextModel:
        features, model = _split(pipeline)
        blocks = []
        offset = 0
        for name, transformer, column in features.transformers_:
            if not _has(column) or (isinstance(transformer, str) and transformer == "drop"):
                continue
            if not isinstance(column, (int, np.integer)):
                raise NotCompilableError(f"block {name!r} reads {column!r}, not one column")
            block = _block(name, transformer, int(column), offset)
            blocks.append(block)
            offset += block.tokens.n_features
        if not blocks or offset != model.coef_.shape[1]:
            raise NotCompilableError(
                f"{offset} features in blocks, {model.coef_.shape[1]} in the model"
            )
        stacked = np.result_type(*(np.dtype(b.tokens.dtype) for b in blocks))
        coef = np.ascontiguousarray(model.coef_[0], np.result_type(stacked, model.coef_.dtype))
        compiled = cls(
            blocks=tuple(blocks),
            coef=coef,
            intercept=np.asarray(model.intercept_).copy(),
            n_columns=int(features.n_features_in_),
            table=_table(blocks, coef),
        )
        compiled.check_against(pipeline)
        return compiled

    def check_against(self, pipeline: Any) -> None:
        """Raise :class:`NotCompilableError` unless this model scores probe rows exactly
        as ``pipeline.predict_proba`` does, or if the kernel fails to compile or run.

        The probe rows mix upper and lower case, accents and combining marks, scripts
        beyond Latin, Unicode spaces, repeated tokens and empty texts.
        """
        check_same_scores(
            self.positive_scores,
            pipeline,
            self._probe_rows(),
            kernel="the text model's kernel",
            source="the pipeline's",
        )

    def _probe_rows(self) -> np.ndarray[Any, Any]:
        rng = np.random.default_rng(0)
        rows = np.empty((PROBE_ROWS, self.n_columns), dtype=object)
        for i in range(PROBE_ROWS):
            for j in range(self.n_columns):
                # Every 16th text is empty; the others up to 40 words, repeats likely.
                n = 0 if i % 16 == j else int(rng.integers(1, 40))
                rows[i, j] = " ".join(rng.choice(_PROBE_WORDS, n))
        return rows

    @property
    def columns(self) -> frozenset[int]:
        """The columns of a row that the model reads (the others are never looked at)."""
        return frozenset(block.column for block in self.blocks)

    @property
    def name(self) -> str:
        """``compiled text model (3 token blocks)``: what scores, as a worker's log names it."""
        return f"compiled text model ({len(self.blocks)} token blocks)"

    def __call__(self, rows: Any) -> FloatArray:
        """:meth:`positive_scores`: a compiled text model is a ``DomainSpec`` scorer."""
        return self.positive_scores(rows)

    def decision_scores(self, rows: Any) -> FloatArray:
        """The regression's decision score (log-odds) of each row."""
        return np.asarray(self._decision(rows), dtype=np.float64)

    def _decision(self, rows: Any) -> np.ndarray[Any, Any]:
        """The decision scores in the model's precision, as scikit-learn has them."""
        table = np.asarray(rows, dtype=object)
        if table.ndim != 2 or table.shape[1] != self.n_columns:
            raise ValueError(
                f"expected rows of {self.n_columns} columns, got an array of shape {table.shape}"
            )
        scores = np.zeros(len(table), dtype=self.coef.dtype)
        weigh = _kernel()
        for block in self.blocks:
            counts = block.tokens.counts(table[:, block.column])
            weights = counts.counts.astype(block.tokens.dtype)
            if block.sublinear_tf:
                np.log(weights, out=weights)
                weights += 1.0
            options = (block.idf is not None, block.l2, block.offset)
            weigh((counts.indptr, counts.columns, weights), self.table, options, scores)
        decision: np.ndarray[Any, Any] = scores + self.intercept
        return decision

    def positive_scores(self, rows: Any) -> FloatArray:
        """The positive class's probability for each row: ``predict_proba(rows)[:, 1]``."""
        return np.asarray(expit(self._decision(rows)), dtype=np.float64)


def _table(blocks: list[TokenBlock], coef: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Each feature's (IDF weight, coefficient) in ``coef``'s precision (IDF 1 where a
    block has none); :class:`NotCompilableError` for an IDF wider than that precision,
    which the table could not hold exactly."""
    table = np.ones((len(coef), 2), dtype=coef.dtype)
    table[:, 1] = coef
    for block in blocks:
        if block.idf is None:
            continue
        if not np.can_cast(block.idf.dtype, coef.dtype, "safe"):
            raise NotCompilableError(
                f"IDF weights in {block.idf.dtype}, coefficients in {coef.dtype}"
            )
        table[block.offset : block.offset + len(block.idf), 0] = block.idf
    return table


def _has(column: Any) -> bool:
    return not (isinstance(column, (list, tuple, np.ndarray)) and len(column) == 0)


def _split(pipeline: Any) -> tuple[ColumnTransformer, LogisticRegression]:
    """The pipeline's two steps, or :class:`NotCompilableError`."""
    steps = getattr(pipeline, "steps", None)
    if not isinstance(pipeline, Pipeline) or steps is None or len(steps) != 2:
        raise NotCompilableError("not a two-step pipeline of features and a model")
    features, model = steps[0][1], steps[1][1]
    if not isinstance(features, ColumnTransformer) or not hasattr(features, "transformers_"):
        raise NotCompilableError("the first step is not a fitted ColumnTransformer")
    if features.transformer_weights is not None:
        raise NotCompilableError("the ColumnTransformer weighs its blocks")
    if not getattr(features, "sparse_output_", False):
        raise NotCompilableError("the ColumnTransformer's output is dense")
    if not isinstance(model, LogisticRegression) or not hasattr(model, "coef_"):
        raise NotCompilableError("the model is not a fitted LogisticRegression")
    if len(model.classes_) != 2 or model.coef_.shape[0] != 1:
        raise NotCompilableError("only a two-class model compiles")
    return features, model


def _block(name: str, transformer: Any, column: int, offset: int) -> TokenBlock:
    """One block of the ColumnTransformer, or :class:`NotCompilableError`."""
    steps = transformer.steps if isinstance(transformer, Pipeline) else [(name, transformer)]
    tokens = steps[0][1]
    tfidf = steps[1][1] if len(steps) == 2 else None
    if not isinstance(tokens, HashedTokens) or len(steps) > 2:
        raise NotCompilableError(f"block {name!r} is not HashedTokens, then at most TF-IDF")
    if np.dtype(tokens.dtype) not in (np.float32, np.float64):
        raise NotCompilableError(f"block {name!r} counts in {tokens.dtype}")
    if tfidf is None:
        return TokenBlock(column, tokens, False, None, False, offset)
    if not isinstance(tfidf, TfidfTransformer) or tfidf.norm not in ("l2", None):
        raise NotCompilableError(f"block {name!r} weighs with {tfidf!r}")
    idf = getattr(tfidf, "idf_", None) if tfidf.use_idf else None
    if tfidf.use_idf and idf is None:
        raise NotCompilableError(f"block {name!r}'s TF-IDF is not fitted")
    return TokenBlock(column, tokens, bool(tfidf.sublinear_tf), idf, tfidf.norm == "l2", offset)
