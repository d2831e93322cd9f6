"""The transactions domain: fraud or legitimate, from the amount and the processor's features.

Rows are a float64 array: ``v1`` .. ``v28``, then the amount. The pipeline is a
histogram gradient-boosted tree model tuned for a 0.2 % positive rate: a small learning
rate, many iterations, few leaves and no early stopping (early stopping on a random
10 % keeps too few frauds to stop well).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline

from inferloop.domains import metrics as m
from inferloop.domains import schemas as s
from inferloop.domains.spec import DomainSpec

ROW_COLUMNS: tuple[str, ...] = (*s.TRANSACTION_FEATURES, "amount")
_ROW_OF = attrgetter(*ROW_COLUMNS)


def transaction_rows(events: Sequence[s.Event]) -> s.Rows:
    """The rows of a batch of transactions: v1 .. v28, amount."""
    if not events:
        return np.empty((0, len(ROW_COLUMNS)), dtype=np.float64)
    return np.array([_ROW_OF(e) for e in events], dtype=np.float64)


class TransactionsDomain(DomainSpec):
    """Fraud detection: the best precision that still catches 80 % of the fraud."""

    name = "transactions"
    schema_version = s.TRANSACTIONS_SCHEMA_VERSION
    label_names = ("legit", "fraud")
    event_model = s.TransactionEvent
    labelled_model = s.LabelledTransaction
    primary_metric = "auprc"
    floor = 0.70

    def __init__(self, min_fraud_recall: float = 0.80) -> None:
        # The share of fraud the threshold must still catch, on out-of-fold scores.
        self.min_fraud_recall = min_fraud_recall

    def to_rows(self, events: Sequence[s.Event]) -> s.Rows:
        """v1 .. v28, amount per transaction."""
        return transaction_rows(events)

    def build_pipeline(self, seed: int) -> Pipeline:
        """A histogram gradient-boosted tree model, tuned for rare positives."""
        model = HistGradientBoostingClassifier(
            learning_rate=0.05,
            max_iter=500,
            max_leaf_nodes=15,
            min_samples_leaf=40,
            l2_regularization=1.0,
            early_stopping=False,
            random_state=seed,
        )
        return Pipeline([("model", model)])

    def choose_threshold(self, y: np.ndarray[Any, Any], oof_scores: np.ndarray[Any, Any]) -> float:
        """The best-precision threshold that keeps ``min_fraud_recall`` (80 %) of the fraud."""
        return m.threshold_at_recall(y, oof_scores, self.min_fraud_recall)

    def threshold_target(self) -> str:
        """What the threshold is chosen for, in words."""
        return f"best precision at >= {self.min_fraud_recall:.0%} fraud recall (out of fold)"
