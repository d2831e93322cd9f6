"""Pipelines, thresholds and metrics on small synthetic data (the real data: test_datasets)."""

from __future__ import annotations

import io

import joblib
import numpy as np
import pytest
from sklearn.pipeline import Pipeline

from inferloop.domains import DomainSpec, TrainingError, TransactionsDomain, get_domain, training
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
    assert rows[0, 2] == rows[0, 0][:300]
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

    assert fitted.oof_scores.shape == (600,)
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
