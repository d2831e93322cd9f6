"""The recipe: from a snapshot to a fitted candidate scored on its holdout.

The same function serves a run and a rebuild: a run takes the recipe from the
settings, a rebuild from a version's lineage, so "the same offsets and the same
recipe give the same model" is one code path, not two that could drift.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from inferloop.domains import DomainSpec
from inferloop.domains.training import Fitted, build, fit
from inferloop.retrain.columns import Columns
from inferloop.retrain.dataset import Split, deduplicate, time_split
from inferloop.retrain.gate import PAUC_MIN_NEGATIVES
from inferloop.retrain.progress import Progress
from inferloop.retrain.provenance import config_sha256
from inferloop.retrain.snapshot import Snapshot
from inferloop.settings import RetrainSettings

log = logging.getLogger(__name__)

DEDUP_RULE = "one example per event id: latest labelled_at, then the later record"
SPLIT_RULE = "holdout: newest fraction of mature examples by event time; train: older"
# With a training window the holdout is a fraction of the window and its holdout, not of
# the whole log (a recipe that names this rule; older windowed lineages did not).
WINDOW_SPLIT_RULE = (
    "holdout: newest fraction of the mature window plus holdout by event time, reaching "
    "back to hold holdout_min_per_class of each class; train: the window, older"
)


@dataclass(frozen=True)
class Recipe:
    """Everything besides the data that decides what a run fits."""

    domain: str
    schema_version: int
    holdout_fraction: float
    label_maturity_s: float
    window_s: float | None
    folds: int
    fit_threads: int
    seed: int
    pipeline: str  # the unfitted pipeline's repr: its steps and parameters
    # Parameters set on the domain's pipeline (``step__parameter``), e.g. an operator's
    # experiment; part of the recipe, so a rebuild sets them too.
    params: dict[str, Any] = field(default_factory=dict)
    # Fit on only the newest this many training examples (None, as in versions fitted
    # before the setting: all of them); the holdout is then a share of the window and
    # itself (``dataset.holdout_size``).
    train_window_labels: int | None = None
    # With a window, the holdout reaches back to hold this many of each class (what the
    # gate needs to decide: min_holdout_positives positives, the negatives of a partial
    # ROC-AUC); None without a window (and left out of the config).
    holdout_min_per_class: int | None = None

    @classmethod
    def from_settings(
        cls,
        spec: DomainSpec,
        retrain: RetrainSettings,
        seed: int | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Recipe:
        """The recipe the settings describe (``seed`` and ``params`` override theirs)."""
        chosen = retrain.seed if seed is None else seed
        overrides = dict(params or {})
        window = getattr(retrain, f"{spec.name}_train_window_labels")
        return cls(
            domain=spec.name,
            schema_version=spec.schema_version,
            holdout_fraction=retrain.holdout_fraction,
            label_maturity_s=retrain.label_maturity_s,
            window_s=retrain.window_s,
            folds=retrain.folds,
            fit_threads=retrain.fit_threads,
            seed=chosen,
            pipeline=repr(build(spec, chosen, overrides)),
            params=overrides,
            train_window_labels=window,
            holdout_min_per_class=None if window is None else holdout_needs(retrain),
        )

    @classmethod
    def from_lineage(cls, lineage: dict[str, Any]) -> Recipe:
        """The recipe a version's lineage recorded."""
        stored = dict(lineage["training_config"])
        stored.pop("dedup_rule", None)
        stored.pop("split_rule", None)
        return cls(**stored)

    def as_config(self) -> dict[str, Any]:
        """The recipe with the rules it applies, as stored in the lineage."""
        split_rule = SPLIT_RULE if self.train_window_labels is None else WINDOW_SPLIT_RULE
        config = asdict(self) | {"dedup_rule": DEDUP_RULE, "split_rule": split_rule}
        if self.holdout_min_per_class is None:
            # As recorded before the field: the same recipe keeps the same hash.
            del config["holdout_min_per_class"]
        return config

    def sha256(self) -> str:
        """The hash of the training configuration."""
        return config_sha256(self.as_config())


def holdout_needs(retrain: RetrainSettings) -> int:
    """Examples of each class a windowed holdout reaches back for: the gate's positives
    (``min_holdout_positives``) and the negatives of its partial ROC-AUC."""
    return max(retrain.min_holdout_positives, PAUC_MIN_NEGATIVES)


@dataclass(frozen=True)
class Trained:
    """A fitted candidate with its data and its scores on the holdout."""

    examples: Columns
    duplicates: int
    split: Split
    fitted: Fitted
    holdout_y: np.ndarray[Any, Any]
    holdout_scores: np.ndarray[Any, Any]
    metrics: dict[str, float]
    predictions_sha256: str
    durations_s: dict[str, float]


def holdout_rows(spec: DomainSpec, trained: Trained) -> Any:
    """The rows of the holdout, to score another model on the same examples."""
    return spec.take_rows(trained.examples.rows, trained.split.holdout)


def predictions_digest(ids: np.ndarray[Any, Any], scores: np.ndarray[Any, Any]) -> str:
    """SHA-256 over the holdout's ids and scores (rounded to 12 decimals), in order."""
    digest = hashlib.sha256()
    digest.update(b"\0".join(bytes(i) for i in ids))
    digest.update(np.round(np.asarray(scores, dtype=np.float64), 12).tobytes())
    return digest.hexdigest()


@contextmanager
def fit_resources(threads: int, nice: int) -> Iterator[None]:
    """Cap native thread pools and lower this thread's CPU priority for a fit.

    Linux gives each thread its own nice value, so only the fitting thread (and the
    threads it starts) yield to the workers; the service's other threads keep theirs.
    """
    with threadpool_limits(limits=threads), _lowered_priority(nice):
        yield


@contextmanager
def _lowered_priority(nice: int) -> Iterator[None]:
    if nice <= 0 or not hasattr(os, "setpriority"):
        yield
        return
    tid = threading.get_native_id()
    before = os.getpriority(os.PRIO_PROCESS, tid)
    os.setpriority(os.PRIO_PROCESS, tid, min(before + nice, 19))
    try:
        yield
    finally:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, before)
        except PermissionError:
            # Only a privileged process may raise a priority back: this thread stays low.
            log.debug("thread %d keeps nice %d after the fit", tid, min(before + nice, 19))


def train_and_score(
    spec: DomainSpec,
    snapshot: Snapshot,
    recipe: Recipe,
    *,
    nice: int = 0,
    progress: Progress | None = None,
) -> Trained:
    """De-duplicate, split, fit on the older side and score the holdout."""
    progress = progress or Progress()
    durations: dict[str, float] = {}
    started = time.perf_counter()
    examples, duplicates = deduplicate(snapshot.columns, spec)
    split = time_split(
        examples,
        holdout_fraction=recipe.holdout_fraction,
        as_of_s=snapshot.taken_at_s,
        maturity_s=recipe.label_maturity_s,
        window_labels=recipe.train_window_labels,
        min_per_class=recipe.holdout_min_per_class or 0,
    )
    durations["prepare"] = time.perf_counter() - started
    train_rows = spec.take_rows(examples.rows, split.train)
    started = time.perf_counter()
    with progress.step(spec.name, "fitting", None), fit_resources(recipe.fit_threads, nice):
        fitted = fit(
            spec,
            train_rows,
            examples.y[split.train],
            seed=recipe.seed,
            folds=recipe.folds,
            params=recipe.params,
        )
    durations["fit"] = time.perf_counter() - started
    started = time.perf_counter()
    y = examples.y[split.holdout]
    with threadpool_limits(limits=recipe.fit_threads):
        scores = fitted.pipeline.predict_proba(spec.take_rows(examples.rows, split.holdout))[:, 1]
    metrics = spec.metrics(y, scores, fitted.threshold)
    durations["score"] = time.perf_counter() - started
    return Trained(
        examples=examples,
        duplicates=duplicates,
        split=split,
        fitted=fitted,
        holdout_y=y,
        holdout_scores=np.asarray(scores, dtype=np.float64),
        metrics=metrics,
        predictions_sha256=predictions_digest(examples.ids[split.holdout], scores),
        durations_s=durations,
    )
