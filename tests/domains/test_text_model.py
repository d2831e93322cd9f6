"""CompiledTextModel: the same scores as the emails pipeline's predict_proba, bit for bit."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.pipeline import Pipeline, make_pipeline

from inferloop.domains import get_domain
from inferloop.domains import text_model as tm
from inferloop.domains.errors import NotCompilableError
from inferloop.domains.hashing import HashedTokens
from inferloop.domains.spec import PipelineScorer
from inferloop.domains.text_model import CompiledTextModel
from tests.domains.factories import email_dict, encode

EMAILS = get_domain("emails")
Array = np.ndarray[Any, Any]

_SPAM = ["WINNER", "free", "Prize!!", "£1000", "fr33", "cash", "clíck", "ÖFFER", "crédit"]
_HAM = ["meeting", "Tuesday", "report", "lunch", "draft", "réview", "projet", "notes", "日程"]
_SPACES = [" ", "  ", "\t", "\n", "\u00a0", "\u2003"]


def email_rows(n: int, seed: int) -> tuple[Array, Array]:
    """Rows as the emails domain makes them (text, header tokens, start of the text):
    mixed case, accents, other scripts, Unicode spaces, repeated words, a few empty."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int8)
    rows = np.empty((n, 3), dtype=object)
    for i, label in enumerate(y):
        words = list(rng.choice(_SPAM if label else _HAM, size=int(rng.integers(0, 30))))
        words += list(rng.choice(_HAM, size=int(rng.integers(0, 5))))
        text = "".join(w + str(rng.choice(_SPACES)) for w in words)
        domain = "deals.biz" if label and rng.random() < 0.7 else "corp.example"
        rows[i] = [text, f"from:{domain} rcpt:1 ct:text/plain", text[:200]]
    return rows, y


def fitted_emails_pipeline(n: int = 600, seed: int = 0) -> tuple[Pipeline, Array]:
    rows, y = email_rows(n, seed)
    return EMAILS.build_pipeline(seed=0).fit(rows, y), rows


def test_scores_are_the_pipelines_exactly() -> None:
    pipeline, rows = fitted_emails_pipeline()
    compiled = CompiledTextModel.from_pipeline(pipeline)
    assert compiled.name == "compiled text model (2 token blocks)"
    unseen, _ = email_rows(400, seed=1)
    for batch in (rows, unseen, unseen[:1], unseen[::7]):
        assert np.array_equal(compiled(batch), pipeline.predict_proba(batch)[:, 1])


def test_an_empty_batch_and_rows_of_the_wrong_width() -> None:
    pipeline, rows = fitted_emails_pipeline()
    compiled = CompiledTextModel.from_pipeline(pipeline)
    assert compiled(rows[:0]).shape == (0,)
    with pytest.raises(ValueError, match="expected rows of 3 columns"):
        compiled(rows[:, :2])


@pytest.mark.parametrize(
    ("tfidf", "dtype"),
    [
        (TfidfTransformer(use_idf=False, norm=None), np.float32),
        (TfidfTransformer(sublinear_tf=True), np.float64),
        (None, np.float32),
    ],
    ids=["tf-only", "float64", "no-tfidf"],
)
def test_other_weightings_score_exactly(tfidf: Any, dtype: Any) -> None:
    tokens = HashedTokens("char", ngram_range=(2, 3), n_features=2**12, dtype=dtype)
    block = tokens if tfidf is None else make_pipeline(tokens, tfidf)
    features = ColumnTransformer(
        [("a", block, 0), ("b", HashedTokens("word", n_features=2**10), 1)], sparse_threshold=1.0
    )
    pipeline = Pipeline([("features", features), ("model", LogisticRegression(C=10.0))])
    rows, y = email_rows(400, seed=2)
    pipeline.fit(rows[:, [0, 2]], y)
    compiled = CompiledTextModel.from_pipeline(pipeline)
    assert np.array_equal(compiled(rows[:, [0, 2]]), pipeline.predict_proba(rows[:, [0, 2]])[:, 1])


def _features(**changes: Any) -> ColumnTransformer:
    blocks = changes.pop("blocks", [("words", HashedTokens("word", n_features=2**10), 0)])
    return ColumnTransformer(blocks, **({"sparse_threshold": 1.0} | changes))


def _with(features: ColumnTransformer, model: Any = None) -> Pipeline:
    return Pipeline([("features", features), ("model", model or LogisticRegression())])


@pytest.mark.parametrize(
    ("pipeline", "reason"),
    [
        (_with(_features(), SGDClassifier()), "not a fitted LogisticRegression"),
        (_with(_features(sparse_threshold=0.0)), "output is dense"),
        (_with(_features(transformer_weights={"words": 2.0})), "weighs its blocks"),
        (
            _with(_features(blocks=[("w", HashingVectorizer(n_features=2**10), 0)])),
            "not HashedTokens",
        ),
        (
            _with(
                _features(
                    blocks=[("w", make_pipeline(HashedTokens(), TfidfTransformer(norm="l1")), 0)]
                )
            ),
            "weighs with",
        ),
        (_with(_features(blocks=[("w", HashedTokens(), [0])])), "reads \\[0\\], not one column"),
    ],
    ids=["sgd", "dense", "weighted", "hashing-vectorizer", "l1", "column-list"],
)
def test_pipelines_of_another_form_do_not_compile(pipeline: Pipeline, reason: str) -> None:
    rows, y = email_rows(200, seed=3)
    pipeline.fit(rows, y)
    with pytest.raises(NotCompilableError, match=reason):
        CompiledTextModel.from_pipeline(pipeline)


def test_an_unfitted_or_three_class_pipeline_does_not_compile() -> None:
    with pytest.raises(NotCompilableError, match="fitted ColumnTransformer"):
        CompiledTextModel.from_pipeline(EMAILS.build_pipeline(seed=0))
    rows, y = email_rows(300, seed=4)
    y3 = (y + (np.arange(len(y)) % 3 == 0)).astype(np.int8)
    pipeline = _with(_features()).fit(rows, y3)
    with pytest.raises(NotCompilableError, match="two-class"):
        CompiledTextModel.from_pipeline(pipeline)


def test_a_compiled_form_that_disagrees_with_its_pipeline_or_fails_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pipeline, _ = fitted_emails_pipeline()
    compiled = CompiledTextModel.from_pipeline(pipeline)
    off = replace(compiled, intercept=compiled.intercept + 1e-9)
    with pytest.raises(NotCompilableError, match="differ from the pipeline's by"):
        off.check_against(pipeline)

    def broken() -> Any:
        def weigh(*args: Any) -> None:
            raise RuntimeError("no machine code")

        return weigh

    monkeypatch.setattr(tm, "_kernel", broken)
    with pytest.raises(NotCompilableError, match="kernel failed"):
        compiled.check_against(pipeline)


def test_the_emails_domain_scores_compiled_first_then_by_its_pipeline() -> None:
    pipeline, rows = fitted_emails_pipeline()
    compiled, plain = EMAILS.scorers(pipeline)
    assert isinstance(compiled, CompiledTextModel)
    assert isinstance(plain, PipelineScorer)
    assert np.array_equal(compiled(rows), plain(rows))
    one_step = Pipeline([("model", LogisticRegression())])
    with pytest.raises(NotCompilableError, match="two-step pipeline"):
        CompiledTextModel.from_pipeline(one_step)
    (only,) = EMAILS.scorers(one_step)
    assert isinstance(only, PipelineScorer)


def _pipeline_with_header_tokens(seed: int) -> Pipeline:
    """The emails pipeline as versions trained before the header tokens were left out
    built it: words, header tokens (the rows' column 1) and character n-grams."""

    def tfidf(tokens: HashedTokens, sublinear: bool = True) -> Pipeline:
        return make_pipeline(tokens, TfidfTransformer(sublinear_tf=sublinear))

    meta = HashedTokens("whitespace", lowercase=False, n_features=2**16)
    features = ColumnTransformer(
        [
            ("words", tfidf(HashedTokens("word", strip_accents=True)), 0),
            ("meta", tfidf(meta, sublinear=False), 1),
            ("chars", tfidf(HashedTokens("char", ngram_range=(1, 4))), 2),
        ],
        sparse_threshold=1.0,
    )
    model = LogisticRegression(C=30.0, max_iter=3000, solver="liblinear", random_state=seed)
    return Pipeline([("features", features), ("model", model)])


def _other_mailbox(rows: Array) -> Array:
    moved = rows.copy()
    moved[:, 1] = "from:none rcpt:0 ct:none mailer:none msgid:none"
    return moved


def test_the_emails_pipeline_does_not_read_the_header_tokens() -> None:
    # The header tokens name the mailbox more than the spam: the same email from
    # another mailbox scores the same. Before: a model trained with them scored it
    # otherwise (the rows' column 1 was a block of its features).
    pipeline, rows = fitted_emails_pipeline()
    assert np.array_equal(
        pipeline.predict_proba(_other_mailbox(rows))[:, 1], pipeline.predict_proba(rows)[:, 1]
    )
    compiled = CompiledTextModel.from_pipeline(pipeline)
    assert np.array_equal(compiled(_other_mailbox(rows)), compiled(rows))


def test_a_version_trained_with_header_tokens_still_compiles_and_reads_them() -> None:
    # Rows keep the header tokens' column, so a version trained before scores as it did.
    rows, y = email_rows(600, seed=0)
    old = _pipeline_with_header_tokens(seed=0).fit(rows, y)
    compiled = CompiledTextModel.from_pipeline(old)
    assert compiled.name == "compiled text model (3 token blocks)"
    assert np.array_equal(compiled(rows), old.predict_proba(rows)[:, 1])
    assert not np.array_equal(compiled(_other_mailbox(rows)), compiled(rows))
    real = EMAILS.to_rows(EMAILS.validate_batch([encode(email_dict())]).events)
    assert real.shape == (1, 3)
    assert np.array_equal(compiled(real), old.predict_proba(real)[:, 1])
