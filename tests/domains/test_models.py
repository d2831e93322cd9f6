"""Pipelines, thresholds and metrics on small synthetic data (the real data: test_datasets)."""

from __future__ import annotations

import io

import joblib
import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from inferloop.domains import DomainSpec, TrainingError, TransactionsDomain, get_domain, training
from inferloop.domains import emails as em
from inferloop.domains import metrics as m
from inferloop.domains import schemas as s
from tests.domains.factories import email_dict, encode, transaction_dict

EMAILS = get_domain("emails")
TRANSACTIONS = get_domain("transactions")

_SPAM_WORDS = ["winner", "free", "prize", "viagra", "cash", "click", "offer", "credit"]
_HAM_WORDS = ["meeting", "tuesday", "report", "lunch", "draft", "review", "project", "notes"]


def synthetic_emails(n: int, seed: int = 0) -> tuple[list[s.Event], np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int8)
    values = []
    for i, label in enumerate(y):
        words = _SPAM_WORDS if label else _HAM_WORDS
        body = " ".join(rng.choice(words, size=12)) + " " + " ".join(rng.choice(_HAM_WORDS, 3))
        sender = "promo@deals.biz" if label and rng.random() < 0.7 else "ann@corp.example"
        values.append(encode(email_dict(i, body=body, sender=sender)))
    batch = EMAILS.validate_batch(values)
    assert not batch.rejects
    return batch.events, y


def synthetic_transactions(n: int, seed: int = 0) -> tuple[list[s.Event], np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.1).astype(np.int8)
    values = []
    for i, label in enumerate(y):
        shift = {"v14": -4.0 + rng.normal(), "v4": 3.0 + rng.normal()} if label else {}
        values.append(encode(transaction_dict(i, **shift)))
    batch = TRANSACTIONS.validate_batch(values)
    assert not batch.rejects
    return batch.events, y


def test_email_rows_hold_text_and_header_tokens() -> None:
    (event,) = EMAILS.validate_batch([encode(email_dict(subject="Hello"))]).events
    rows = EMAILS.to_rows([event])
    assert rows.shape == (1, 3)
    assert rows[0, 2] == rows[0, 0][: em.HEAD_CHARS]
    assert rows[0, 0].startswith("Hello\n")
    tokens = rows[0, 1].split()
    assert "from:example.org" in tokens
    assert "ct:text/plain" in tokens
    assert "mailer:thunderbird" in tokens


def test_transaction_rows_are_features_then_amount() -> None:
    event_dict = transaction_dict(3)
    (event,) = TRANSACTIONS.validate_batch([encode(event_dict)]).events
    rows = TRANSACTIONS.to_rows([event])
    assert rows.dtype == np.float64
    assert rows.shape == (1, 29)
    assert rows[0, 0] == event_dict["v1"]
    assert rows[0, -1] == event_dict["amount"]
    assert TRANSACTIONS.to_rows([]).shape == (0, 29)


class QuickTransactions(TransactionsDomain):
    """The default pipeline with fewer trees: the same mechanics, a fraction of the time."""

    def build_pipeline(self, seed: int) -> Pipeline:
        return super().build_pipeline(seed).set_params(model__max_iter=60)


@pytest.mark.parametrize(
    ("spec", "make"),
    [(EMAILS, synthetic_emails), (QuickTransactions(), synthetic_transactions)],
    ids=["emails", "transactions"],
)
def test_fit_chooses_a_threshold_out_of_fold_and_the_artifact_round_trips(
    spec: DomainSpec, make: object
) -> None:
    events, y = make(600)  # type: ignore[operator]
    rows = spec.to_rows(events)
    fitted = training.fit(spec, rows, y, seed=1, folds=3)

    # Four blocks in time; the oldest is never scored.
    assert 400 <= len(fitted.oof_index) <= 500
    assert fitted.oof_scores.shape == fitted.oof_index.shape == fitted.oof_y.shape
    assert (np.diff(fitted.oof_index) > 0).all()
    assert (fitted.oof_y == y[fitted.oof_index]).all()
    assert fitted.oof_index.min() > 50
    assert 0.0 <= fitted.threshold <= 1.0
    scores = fitted.pipeline.predict_proba(rows)[:, 1]
    metrics = spec.metrics(y, scores, fitted.threshold)
    assert {"precision", "recall", "f1", "mcc", "roc_auc", "auprc", "fpr"} <= set(metrics)
    assert metrics["roc_auc"] > 0.95
    assert metrics[spec.primary_metric] > spec.floor

    buffer = io.BytesIO()
    joblib.dump(fitted.pipeline, buffer)
    buffer.seek(0)
    loaded = joblib.load(buffer)
    assert np.array_equal(loaded.predict_proba(rows)[:, 1], scores)


def test_email_rows_read_words_from_the_start_of_a_long_text_only() -> None:
    body = "word " * (em.TEXT_CHARS // 5 + 1000)
    (event,) = EMAILS.validate_batch([encode(email_dict(body=body))]).events
    rows = EMAILS.to_rows([event])
    assert len(rows[0, em.TEXT_COLUMN]) == em.TEXT_CHARS
    assert len(rows[0, em.HEAD_COLUMN]) == em.HEAD_CHARS


def test_email_threshold_flags_at_most_half_a_percent_of_out_of_fold_ham() -> None:
    events, y = synthetic_emails(600, seed=3)
    fitted = training.fit(EMAILS, EMAILS.to_rows(events), y, seed=1, folds=3)
    ham = fitted.oof_scores[fitted.oof_y == 0]
    assert np.count_nonzero(ham >= fitted.threshold) <= int(0.005 * len(ham))


class _PositionRecorder(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Remembers the positions (column 0) it was fitted on; scores them back."""

    def __init__(self, fits: list[tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        self.fits = fits

    def fit(self, x: np.ndarray, y: np.ndarray) -> _PositionRecorder:
        self.classes_ = np.array([0, 1])
        assert self.fits is not None
        self.fits.append((x[:, 0].astype(int), np.asarray(y)))
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        score = x[:, 0] / 1e6
        return np.column_stack([1 - score, score])


class _RecordingTransactions(TransactionsDomain):
    """Rows are positions; every pipeline records what it was fitted on."""

    def __init__(self) -> None:
        super().__init__()
        self.fits: list[tuple[np.ndarray, np.ndarray]] = []

    def build_pipeline(self, seed: int) -> Pipeline:
        return Pipeline([("model", _PositionRecorder(self.fits))])


def test_forward_folds_score_each_block_with_models_of_its_past_only() -> None:
    rng = np.random.default_rng(5)
    y = (rng.random(300) < 0.2).astype(np.int8)
    rows = np.arange(300, dtype=np.float64)[:, None]
    spec = _RecordingTransactions()
    index, scores = training.forward_oof_scores(spec, rows, y, seed=0, folds=4)

    assert (scores == index / 1e6).all()
    blocks = training.time_blocks(y, 5)
    assert (np.sort(index) == np.sort(np.concatenate(blocks[1:]))).all()
    for fold, (fitted_on, _) in enumerate(spec.fits[:4], start=1):
        scored = blocks[fold]
        for label in (0, 1):
            assert fitted_on[y[fitted_on] == label].max() < scored[y[scored] == label].min()
    # The final fit sees everything.
    training.fit(spec, rows, y, folds=4)
    assert len(spec.fits[-1][0]) == 300


def test_time_blocks_are_contiguous_per_class_and_hold_both_classes() -> None:
    y = np.r_[np.zeros(40), np.ones(20), np.zeros(40), np.ones(20)].astype(np.int8)
    blocks = training.time_blocks(y, 4)
    for block in blocks:
        assert set(y[block]) == {0, 1}
    for label in (0, 1):
        members = np.concatenate([b[y[b] == label] for b in blocks])
        assert (members == np.flatnonzero(y == label)).all()


def test_platt_scaling_recovers_a_known_sigmoid() -> None:
    rng = np.random.default_rng(7)
    z = rng.normal(0.0, 2.0, 40_000)
    y = (rng.random(len(z)) < em.sigmoid(1.8 * z + 0.7)).astype(np.int8)
    slope, intercept = em.platt_scaling(y, em.sigmoid(z))
    assert slope == pytest.approx(1.8, abs=0.1)
    assert intercept == pytest.approx(0.7, abs=0.1)


def test_platt_scaling_keeps_a_finite_slope_on_separated_scores() -> None:
    y = np.r_[np.zeros(50), np.ones(50)]
    scores = np.r_[np.full(50, 0.1), np.full(50, 0.9)]
    slope, _ = em.platt_scaling(y, scores)
    assert 0.0 < slope < 10.0


def test_calibration_folded_into_a_logistic_regression_is_the_sigmoid_of_its_logit() -> None:
    rng = np.random.default_rng(2)
    features = rng.normal(size=(200, 3))
    y = (features[:, 0] + rng.normal(size=200) > 0).astype(int)
    model = LogisticRegression().fit(features, y)
    raw = model.predict_proba(features)[:, 1]
    em.fold_calibration(model, 1.7, -0.4)
    expected = em.sigmoid(1.7 * em.score_logits(raw) - 0.4)
    assert np.allclose(model.predict_proba(features)[:, 1], expected, rtol=1e-9, atol=1e-12)


def test_email_calibration_with_a_reversed_slope_leaves_the_scores_alone() -> None:
    events, y = synthetic_emails(60)
    pipeline = EMAILS.build_pipeline(0).fit(EMAILS.to_rows(events), y)
    coef = pipeline.named_steps["model"].coef_.copy()
    reversed_scores = np.where(y == 1, 0.2, 0.8)
    same, scores = EMAILS.calibrate(pipeline, y, reversed_scores)
    assert same is pipeline
    assert (scores == reversed_scores).all()
    assert (pipeline.named_steps["model"].coef_ == coef).all()


def test_rows_concatenate_and_index() -> None:
    events, _ = synthetic_emails(10)
    rows = EMAILS.to_rows(events)
    both = EMAILS.concat_rows([EMAILS.take_rows(rows, np.arange(4)), rows[4:]])
    assert (both == rows).all()
    assert EMAILS.concat_rows([]).shape == (0, 3)


def test_fit_refuses_too_few_positives() -> None:
    events, _ = synthetic_transactions(50)
    y = np.zeros(50, dtype=np.int8)
    y[:3] = 1
    with pytest.raises(TrainingError):
        training.fit(TRANSACTIONS, TRANSACTIONS.to_rows(events), y, folds=5)


def test_threshold_at_fpr_flags_at_most_that_share_of_negatives() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(1000), np.ones(100)].astype(np.int8)
    scores = np.r_[rng.random(1000) * 0.6, 0.4 + rng.random(100) * 0.6]
    threshold = m.threshold_at_fpr(y, scores, 0.005)
    assert np.count_nonzero(scores[:1000] >= threshold) <= 5
    # The lowest such threshold: one notch lower flags a sixth negative.
    sixth = np.sort(scores[:1000])[::-1][5]
    assert threshold == np.nextafter(sixth, np.inf)


def test_threshold_at_recall_keeps_the_recall() -> None:
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(5000), np.ones(50)].astype(np.int8)
    scores = np.r_[rng.random(5000) ** 4, rng.random(50)]
    threshold = m.threshold_at_recall(y, scores, 0.8)
    assert np.count_nonzero(scores[5000:] >= threshold) >= 40


def test_metrics_at_a_threshold_count_right() -> None:
    y = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.7, 0.6, 0.9])
    metrics = m.threshold_metrics(y, scores, 0.5)
    assert (metrics["tp"], metrics["fp"], metrics["fn"], metrics["tn"]) == (2, 1, 0, 2)
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["recall"] == 1.0
    assert metrics["fpr"] == pytest.approx(1 / 3)


def test_email_rows_of_some_columns_leave_the_others_empty() -> None:
    events, _ = synthetic_emails(20)
    whole = EMAILS.to_rows(events)
    part = em.email_rows(events, {em.TEXT_COLUMN, em.HEAD_COLUMN})
    assert part.shape == whole.shape
    for column in (em.TEXT_COLUMN, em.HEAD_COLUMN):
        assert part[:, column].tolist() == whole[:, column].tolist()
    assert set(part[:, em.META_COLUMN].tolist()) == {""}
    assert em.email_rows(events, {em.META_COLUMN}).tolist() == whole.tolist()
