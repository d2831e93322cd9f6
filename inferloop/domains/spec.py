"""What a domain is: its schemas, its rows, its pipeline, its threshold and its metrics.

A :class:`DomainSpec` is everything the worker and the retraining job need to know
about a domain, so that training and serving go through the same functions.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
from sklearn.pipeline import Pipeline

from inferloop.domains import metrics as m
from inferloop.domains import schemas as s
from inferloop.domains.errors import NotCompilableError
from inferloop.domains.validation import validate_values
from inferloop.settings import Domain

log = logging.getLogger(__name__)


class Scorer(Protocol):
    """Positive-class scores of a batch of rows, from one fitted pipeline."""

    @property
    def name(self) -> str:
        """What scores: ``pipeline``, or the compiled form used instead."""
        ...

    def __call__(self, rows: s.Rows) -> np.ndarray[Any, np.dtype[np.float64]]: ...


@dataclass(frozen=True)
class PipelineScorer:
    """The pipeline's own ``predict_proba``: how every version can be scored."""

    pipeline: Pipeline
    name: str = "pipeline"

    def __call__(self, rows: s.Rows) -> np.ndarray[Any, np.dtype[np.float64]]:
        return np.asarray(self.pipeline.predict_proba(rows)[:, 1], dtype=np.float64)


class DomainSpec(ABC):
    """One domain: how its messages are validated, featurised, scored and judged."""

    name: ClassVar[Domain]
    schema_version: ClassVar[int]
    label_names: ClassVar[tuple[str, str]]  # (negative, positive)
    event_model: ClassVar[type[s.Event]]
    labelled_model: ClassVar[type[s.Event]]
    primary_metric: ClassVar[str]
    floor: ClassVar[float]

    # -- validation ----------------------------------------------------------------
    def validate_batch(self, values: Sequence[bytes | None]) -> s.ValidatedBatch:
        """Validate a batch of raw message values; never raises for bad input."""
        events, indices, rejects, extra = validate_values(self.event_model, values)
        events, indices = self._supported(events, indices, rejects)
        if rejects:
            rejects.sort(key=lambda r: r.index)
        return s.ValidatedBatch(events, indices, rejects, extra)

    def _supported(
        self, events: list[Any], indices: list[int], rejects: list[s.Reject]
    ) -> tuple[list[Any], list[int]]:
        """Drop events of a schema version newer than this code knows, as rejects."""
        known = self.schema_version
        if all(e.schema_version <= known for e in events):
            return events, indices
        kept_events, kept_indices = [], []
        for event, index in zip(events, indices, strict=True):
            if event.schema_version <= known:
                kept_events.append(event)
                kept_indices.append(index)
            else:
                detail = f"schema_version {event.schema_version}, this code knows up to {known}"
                rejects.append(s.Reject(index, s.UNSUPPORTED_VERSION, detail))
        return kept_events, kept_indices

    def parse_labelled(self, values: Sequence[bytes | None]) -> s.LabelledBatch:
        """Parse labelled examples (from the labels topic) into arrays for training."""
        events, indices, rejects, extra = validate_values(self.labelled_model, values)
        # The records' own positions: a reject's index is always its record's.
        events, _ = self._supported(events, indices, rejects)
        rejects.sort(key=lambda r: r.index)
        positive = self.label_names[1]
        return s.LabelledBatch(
            ids=[e.id for e in events],
            event_time_s=np.array([e.event_time.timestamp() for e in events], dtype=np.float64),
            labelled_at_s=np.array(
                [e.labelled_at.timestamp() for e in events],  # type: ignore[attr-defined]
                dtype=np.float64,
            ),
            y=np.array([e.label == positive for e in events], dtype=np.int8),  # type: ignore[attr-defined]
            rows=self.to_rows(events),
            rejects=rejects,
            extra_fields=extra,
        )

    # -- rows ----------------------------------------------------------------------
    @abstractmethod
    def to_rows(self, events: Sequence[s.Event]) -> s.Rows:
        """The pipeline's input for ``events``: the one function that builds it."""

    def concat_rows(self, parts: Sequence[s.Rows]) -> s.Rows:
        """Rows of several batches, one after the other."""
        if not parts:
            return self.to_rows([])
        return np.concatenate(list(parts), axis=0)

    def take_rows(self, rows: s.Rows, idx: np.ndarray[Any, Any]) -> s.Rows:
        """The rows at positions ``idx`` (an integer or boolean index array)."""
        taken: s.Rows = rows[np.asarray(idx)]
        return taken

    # -- model ---------------------------------------------------------------------
    @abstractmethod
    def build_pipeline(self, seed: int) -> Pipeline:
        """The domain's default pipeline, unfitted, featurisation included."""

    def calibrate(
        self, pipeline: Pipeline, y: np.ndarray[Any, Any], oof_scores: np.ndarray[Any, Any]
    ) -> tuple[Pipeline, np.ndarray[Any, Any]]:
        """Calibrate a fitted pipeline's scores from out-of-fold scores.

        Returns the pipeline and the out-of-fold scores on its new scale; the
        threshold is chosen on the latter. By default the scores stay as they are.
        """
        return pipeline, oof_scores

    def compile(self, pipeline: Pipeline) -> Scorer | None:
        """A compiled equivalent of ``pipeline``'s ``predict_proba``, faster on small
        batches; ``None`` when the domain has none. Raises :class:`NotCompilableError`
        when this pipeline does not compile."""
        return None

    def scorers(self, pipeline: Pipeline) -> list[Scorer]:
        """The ways to score with a fitted ``pipeline``, fastest first.

        The last is always the pipeline's own ``predict_proba``; before it comes the
        domain's compiled form when the pipeline compiles. A worker serves with the
        first one that reproduces the version's golden scores.
        """
        plain = PipelineScorer(pipeline)
        try:
            compiled = self.compile(pipeline)
        except NotCompilableError as exc:
            log.info("scoring %s with the pipeline itself: %s", self.name, exc)
            return [plain]
        return [plain] if compiled is None else [compiled, plain]

    @abstractmethod
    def choose_threshold(self, y: np.ndarray[Any, Any], oof_scores: np.ndarray[Any, Any]) -> float:
        """The decision threshold for the domain's target, from out-of-fold scores."""

    @abstractmethod
    def target(self) -> m.ThresholdTarget:
        """The rate the threshold promises (checked on calibration, holdout and live data)."""

    def threshold_target(self) -> str:
        """What the threshold is chosen for, in words."""
        return "domain default"

    def metrics(
        self, y: np.ndarray[Any, Any], scores: np.ndarray[Any, Any], threshold: float
    ) -> dict[str, float]:
        """Precision, recall, F1, MCC, ROC-AUC, AUPRC and FPR at ``threshold``, plus extras."""
        return m.threshold_metrics(y, scores, threshold) | self.extra_metrics(y, scores)

    def extra_metrics(
        self, y: np.ndarray[Any, Any], scores: np.ndarray[Any, Any]
    ) -> dict[str, float]:
        """Domain-specific figures that do not depend on the threshold."""
        return {}

    # -- labels --------------------------------------------------------------------
    def label_of(self, score: float, threshold: float) -> str:
        """The label name for one score (``score >= threshold`` is positive)."""
        return self.label_names[1] if score >= threshold else self.label_names[0]

    def labels_of(self, scores: np.ndarray[Any, Any], threshold: float) -> list[str]:
        """The label names for a batch of scores."""
        negative, positive = self.label_names
        return [positive if flag else negative for flag in m.decide(scores, threshold)]

    def y_of(self, label: str) -> int:
        """1 for the positive label name, 0 for the negative; ValueError otherwise."""
        return self.label_names.index(label)

    def __repr__(self) -> str:
        return f"<DomainSpec {self.name} schema v{self.schema_version}>"
