"""Fitting on every positive and a seeded fraction of the negatives, reweighted.

With 0.2 % fraud, almost all of a fit's time goes into negatives. :class:`NegativeSubsample`
wraps a classifier: at fit time it keeps every positive example and a seeded share of
the negative ones (``negative_fraction``, lowered further so that no more than
``max_negatives`` are kept), and fits the wrapped classifier with sample weight
``1 / share`` on the kept negatives (times any weight given to ``fit``).
The weighted loss is an unbiased estimate of the loss on all the data, so the scores
keep the data's base rate: they are probabilities on the same scale as a fit on
everything, and a threshold chosen on them means what it says.

Scoring is the wrapped classifier's own, so serving is unchanged. The wrapper is an
ordinary scikit-learn estimator: it clones, pickles with joblib, and takes its own
parameters (``negative_fraction``, ``max_negatives``, ``random_state``, ``estimator``)
as well as the
wrapped classifier's: ``set_params(max_iter=200)`` on the wrapper, so
``model__max_iter=200`` on a pipeline whose ``model`` step it is, reaches the wrapped
classifier (so does ``model__estimator__max_iter``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.utils.validation import check_is_fitted

# The wrapper's own parameters; every other name goes to the wrapped classifier.
_OWN = frozenset({"estimator", "negative_fraction", "max_negatives", "random_state"})


def negative_sample(
    y: np.ndarray[Any, Any], fraction: float, random_state: int | None
) -> tuple[np.ndarray[Any, np.dtype[np.intp]], np.ndarray[Any, np.dtype[np.float64]]]:
    """(positions kept, their weights): every positive, ``fraction`` of the negatives.

    Exactly ``round(fraction * negatives)`` negatives (at least one when there are
    any) are drawn without replacement by a generator seeded with ``random_state``;
    positions come back in their original order. Kept negatives weigh
    ``negatives / kept negatives`` (about ``1 / fraction``), positives 1.
    """
    y = np.asarray(y)
    positive = np.flatnonzero(y == 1)
    negative = np.flatnonzero(y != 1)
    if fraction >= 1.0 or len(negative) == 0:
        return np.arange(len(y)), np.ones(len(y), dtype=np.float64)
    count = max(1, round(fraction * len(negative)))
    rng = np.random.default_rng(random_state)
    chosen = np.sort(rng.choice(negative, size=count, replace=False))
    keep = np.concatenate([positive, chosen])
    order = np.argsort(keep, kind="stable")
    weights = np.concatenate([np.ones(len(positive)), np.full(count, len(negative) / count)])
    return keep[order], weights[order]


class NegativeSubsample(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A binary classifier fitted on all positives and a reweighted share of negatives.

    The share is ``negative_fraction``, lowered so that at most ``max_negatives``
    negatives are kept when that is set. A share of 1.0 (a fraction of 1.0 and no
    more negatives than ``max_negatives``) fits on everything, unweighted: the wrapped
    classifier exactly. Labels must be 0 and 1 (1 the rare, positive class).
    """

    def __init__(
        self,
        estimator: Any = None,
        *,
        negative_fraction: float = 1.0,
        max_negatives: int | None = None,
        random_state: int | None = None,
    ) -> None:
        self.estimator = estimator
        self.negative_fraction = negative_fraction
        self.max_negatives = max_negatives
        self.random_state = random_state

    # -- parameters: the wrapped classifier's are addressed directly too --------------
    def set_params(self, **params: Any) -> NegativeSubsample:
        """Set own parameters, and pass any other name on to the wrapped classifier."""
        own = {k: v for k, v in params.items() if k.split("__", 1)[0] in _OWN}
        inner = {k: v for k, v in params.items() if k not in own}
        if own:
            super().set_params(**own)
        if inner:
            if self.estimator is None:
                raise ValueError(f"no wrapped estimator to set {sorted(inner)} on")
            self.estimator.set_params(**inner)
        return self

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Own parameters; with ``deep``, the wrapped classifier's, prefixed and not."""
        params: dict[str, Any] = super().get_params(deep=deep)
        if deep and self.estimator is not None:
            inner = self.estimator.get_params(deep=True)
            params.update({k: v for k, v in inner.items() if k.split("__", 1)[0] not in _OWN})
        return params

    # -- fitting and scoring ------------------------------------------------------------
    def fit(
        self,
        x: Any,
        y: Any,
        sample_weight: np.ndarray[Any, Any] | None = None,
    ) -> NegativeSubsample:
        """Fit a clone of ``estimator`` on the positives and the sampled negatives."""
        if self.estimator is None:
            raise ValueError("NegativeSubsample needs an estimator")
        if not 0.0 < self.negative_fraction <= 1.0:
            raise ValueError(f"negative_fraction must be in (0, 1], not {self.negative_fraction}")
        y = np.asarray(y)
        labels = np.unique(y)
        if not np.isin(labels, (0, 1)).all():
            raise ValueError(f"labels must be 0 and 1, not {labels.tolist()}")
        if self.max_negatives is not None and self.max_negatives < 1:
            raise ValueError(f"max_negatives must be at least 1, not {self.max_negatives}")
        fraction = self.fraction_for(int(np.count_nonzero(y != 1)))
        keep, weights = negative_sample(y, fraction, self.random_state)
        if sample_weight is not None:
            weights = weights * np.asarray(sample_weight, dtype=np.float64)[keep]
        fitted = clone(self.estimator)
        self.fraction_ = fraction
        if fraction >= 1.0 and sample_weight is None:
            fitted.fit(x, y)
        else:
            fitted.fit(x[keep], y[keep], sample_weight=weights)
        self.estimator_ = fitted
        self.classes_ = fitted.classes_
        if hasattr(fitted, "n_features_in_"):
            self.n_features_in_ = fitted.n_features_in_
        self.n_fitted_ = len(keep)
        return self

    def fraction_for(self, negatives: int) -> float:
        """The share of ``negatives`` negative examples a fit keeps."""
        fraction = float(self.negative_fraction)
        if self.max_negatives is not None and negatives > self.max_negatives:
            fraction = min(fraction, self.max_negatives / negatives)
        return fraction

    def predict_proba(self, x: Any) -> Any:
        """The wrapped classifier's probabilities."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(x)

    def predict(self, x: Any) -> Any:
        """The wrapped classifier's labels."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(x)

    def decision_function(self, x: Any) -> Any:
        """The wrapped classifier's raw scores."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.decision_function(x)
