"""Cross-source evaluation: a model trained on one data set, judged on another it never saw.

A spam filter trained on one mailbox meets another organisation's mail; what matters
then is how much of the new source's legitimate mail it flags at the threshold it
chose on its own data. Each data set can be used whole or as its older or newer half
(by event time, per class where its classes were collected over different periods), so
that "the older part of A against the newer part of B" keeps the test data newer than
anything trained on. The two sides never share an example: the same data set on both
sides is allowed only as its older half against its newer half.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from threadpoolctl import threadpool_limits

from inferloop.domains import get_domain, training
from inferloop.domains.datasets import DATASETS, Dataset, deduplicate, holdout_split, load_dataset
from inferloop.domains.errors import DomainError
from inferloop.domains.metrics import RealisedRate
from inferloop.domains.spec import DomainSpec

Part = Literal["all", "older", "newer"]
PARTS: tuple[Part, ...] = ("all", "older", "newer")
# The older and newer parts are halves: each big enough for a threshold at 0.5 % ham.
PART_FRACTION = 0.5


class CrossSourceError(DomainError): ...


@dataclass(frozen=True)
class Side:
    """One side of a cross-source run: which data, which part, how many examples."""

    dataset: str
    part: Part
    examples: int
    positives: int
    duplicates: int

    @property
    def label(self) -> str:
        """``sms`` or ``spamassassin[older]``."""
        return self.dataset if self.part == "all" else f"{self.dataset}[{self.part}]"


@dataclass(frozen=True)
class CrossSourceEvaluation:
    """What ``inferloop evaluate --train-dataset A --test-dataset B`` reports."""

    domain: str
    train: Side
    test: Side
    threshold: float
    # On the test side at the threshold chosen on the training side, with the domain's
    # extras (for emails F1 where 0.5 % and 1 % of the test side's ham are flagged).
    metrics: dict[str, float]
    oof_metrics: dict[str, float]
    fit_s: float
    params: dict[str, object] = field(default_factory=dict)


def check_sides(train_dataset: str, train_part: Part, test_dataset: str, test_part: Part) -> str:
    """The domain both data sets belong to; :class:`CrossSourceError` for a bad pair.

    Refused: data sets of two domains, an unknown part, and the same data set on both
    sides unless as one half against the other (anything else shares examples).
    """
    for name in (train_dataset, test_dataset):
        if name not in DATASETS:
            raise CrossSourceError(
                f"unknown data set {name!r}; expected one of {', '.join(DATASETS)}"
            )
    for part in (train_part, test_part):
        if part not in PARTS:
            raise CrossSourceError(f"unknown part {part!r}; expected one of {', '.join(PARTS)}")
    domain = DATASETS[train_dataset]
    if DATASETS[test_dataset] != domain:
        raise CrossSourceError(
            f"{train_dataset!r} is a data set of the {domain} domain, "
            f"{test_dataset!r} of the {DATASETS[test_dataset]} domain"
        )
    if train_dataset == test_dataset and (
        train_part == test_part or "all" in (train_part, test_part)
    ):
        raise CrossSourceError(
            f"{train_dataset} on both sides shares examples: use one half against the other "
            "(--train-part older --test-part newer)"
        )
    return domain


def dataset_part(dataset: Dataset, part: Part) -> Dataset:
    """``dataset`` whole, or its older or newer half by event time (per class if it
    holds out by class)."""
    if part == "all":
        return dataset
    older, newer = holdout_split(dataset, PART_FRACTION)
    return dataset.subset(older if part == "older" else newer)


def _side(name: str, part: Part, data_dir: Path) -> tuple[Dataset, Side]:
    deduplicated, duplicates = deduplicate(load_dataset(name, data_dir))
    chosen = dataset_part(deduplicated, part)
    return chosen, Side(name, part, len(chosen), int(chosen.y.sum()), duplicates)


def cross_evaluate(
    train_dataset: str,
    test_dataset: str,
    data_dir: Path,
    *,
    train_part: Part = "all",
    test_part: Part = "all",
    seed: int = 42,
    folds: int = 5,
    fit_threads: int | None = None,
    spec: DomainSpec | None = None,
) -> CrossSourceEvaluation:
    """Fit on ``train_dataset``'s part (threshold from its own out-of-fold scores), judge
    on ``test_dataset``'s part. Each data set is de-duplicated before it is cut."""
    domain = check_sides(train_dataset, train_part, test_dataset, test_part)
    spec = spec or get_domain(domain)
    if spec.name != domain:
        raise CrossSourceError(f"the data sets are of the {domain} domain, not {spec.name}")
    train, train_side = _side(train_dataset, train_part, data_dir)
    test, test_side = _side(test_dataset, test_part, data_dir)
    started = time.perf_counter()
    with threadpool_limits(limits=fit_threads):
        fitted = training.fit(spec, spec.to_rows(train.events), train.y, seed=seed, folds=folds)
    fit_s = time.perf_counter() - started
    scores = fitted.pipeline.predict_proba(spec.to_rows(test.events))[:, 1]
    params: dict[str, Any] = {
        "seed": seed,
        "folds": folds,
        "threshold_target": spec.threshold_target(),
        "threshold_source": fitted.threshold_source,
        "test_realised": RealisedRate.of_counts(
            *spec.target().errors(test.y, scores, fitted.threshold)
        ).as_dict(),
    }
    return CrossSourceEvaluation(
        domain=domain,
        train=train_side,
        test=test_side,
        threshold=fitted.threshold,
        metrics=spec.metrics(test.y, scores, fitted.threshold),
        oof_metrics=spec.metrics(fitted.oof_y, fitted.oof_scores, fitted.threshold),
        fit_s=fit_s,
        params=params,
    )
