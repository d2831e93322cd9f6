"""One batch run: chunks of raw values in, predictions and rejects out, a summary.

Each chunk goes through what a worker's batch goes through: the domain's
``validate_batch`` (rejects keep its reasons), one vectorised call of the verified
model's scorer with the worker's isolation of events that break it
(``scoring_error``), and the worker's prediction encoder.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from inferloop.batch.errors import ModelMismatchError
from inferloop.batch.files import Chunk
from inferloop.batch.sinks import RejectsWriter, Sink, reject_line
from inferloop.domains import DomainSpec
from inferloop.domains.predictions import (
    REASON_SCORING_ERROR,
    Encoded,
    PredictionEncoder,
    score_isolating_failures,
    without_failures,
)
from inferloop.registry import Registry
from inferloop.registry.serving import ActiveModel, activate

log = logging.getLogger(__name__)


def load_model(registry: Registry, spec: DomainSpec, name: str, version: int) -> ActiveModel:
    """Version ``version`` of model ``name``, verified exactly as a worker verifies it:
    signature and digest before unpickling (``Registry.load``), then the input schema
    and the golden scores through this process's validation and fastest scorer
    (``serving.activate``)."""
    stored = registry.get_version(name, version)
    if stored.domain != spec.name:
        raise ModelMismatchError(
            f"{name} v{version} is a model of {stored.domain}, not of {spec.name}"
        )
    return activate(registry.load(name, version), spec)


@dataclass
class Summary:
    """What a run did: counts by label and by reject reason, and its rate."""

    model: str
    scorer: str
    read: int = 0
    predicted: int = 0
    rejected: int = 0
    labels: Counter[str] = field(default_factory=Counter)
    reject_reasons: Counter[str] = field(default_factory=Counter)
    extra_fields: int = 0
    elapsed_s: float = 0.0

    @property
    def events_per_s(self) -> float:
        """Events read per second of the run: reading, validating, scoring and writing
        (loading and verifying the model before it is not counted)."""
        return self.read / self.elapsed_s if self.elapsed_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The summary as ``--json`` prints it."""
        return {
            "model": self.model,
            "scorer": self.scorer,
            "read": self.read,
            "predicted": self.predicted,
            "rejected": self.rejected,
            "labels": dict(self.labels),
            "reject_reasons": dict(sorted(self.reject_reasons.items())),
            "extra_fields": self.extra_fields,
            "elapsed_s": round(self.elapsed_s, 3),
            "events_per_s": round(self.events_per_s, 1),
        }


class BatchRun:
    """Scores chunks with one verified model, writing predictions and rejects."""

    def __init__(
        self,
        model: ActiveModel,
        predictions: Sink,
        rejects: RejectsWriter,
        *,
        on_chunk: Callable[[Chunk, Summary], None] = lambda chunk, summary: None,
    ) -> None:
        self.model = model
        self._spec = model.spec
        self._predictions = predictions
        self._rejects = rejects
        self._on_chunk = on_chunk
        self._encoder = PredictionEncoder(model.spec.name, model.spec.label_names)
        self._model_extra = {"model": model.ref}

    def run(self, chunks: Iterable[Chunk]) -> Summary:
        """Score every chunk in turn; the summary of the whole run."""
        summary = Summary(model=self.model.ref, scorer=self.model.scorer.name)
        summary.labels.update(dict.fromkeys(self._spec.label_names, 0))
        started = time.perf_counter()
        for chunk in chunks:
            self.score_chunk(chunk, summary)
            summary.elapsed_s = time.perf_counter() - started
            self._on_chunk(chunk, summary)
        summary.elapsed_s = time.perf_counter() - started
        log.info(
            "scored %d events with %s in %.1f s: %d predicted, %d rejected",
            summary.read, summary.model, summary.elapsed_s, summary.predicted, summary.rejected,
        )  # fmt: skip
        return summary

    def score_chunk(self, chunk: Chunk, summary: Summary) -> Encoded:
        """Validate, score and encode one chunk; write its predictions and rejects."""
        now_iso = datetime.now(UTC).isoformat()
        validated = self._spec.validate_batch(chunk.values)
        rejects = [
            reject_line(chunk.values[r.index], r.reason, r.detail, chunk.origin(r.index), {})
            for r in validated.rejects
        ]
        summary.reject_reasons.update(r.reason for r in validated.rejects)
        events, scores = self._score(chunk, validated.events, validated.indices, rejects)
        encoded = self._encoder.encode(
            events, scores, threshold=self.model.threshold, model_json=self.model.ref_json,
            predicted_at=now_iso,
        )  # fmt: skip
        self._predictions.write(encoded.keys, encoded.values)
        self._rejects.write(rejects)
        negative, positive = self._spec.label_names
        summary.read += len(chunk.values)
        summary.predicted += len(encoded.values)
        summary.rejected += len(rejects)
        if failed := len(rejects) - len(validated.rejects):
            summary.reject_reasons[REASON_SCORING_ERROR] += failed
        summary.labels[positive] += encoded.positives
        summary.labels[negative] += len(encoded.values) - encoded.positives
        summary.extra_fields += validated.extra_fields
        return encoded

    def _score(
        self, chunk: Chunk, events: list[Any], indices: list[int], rejects: list[bytes]
    ) -> tuple[list[Any], np.ndarray[Any, Any]]:
        """Scores of ``events`` in one call; the ones that break the model are rejected as
        ``scoring_error`` (appended to ``rejects``) and left out."""
        outcome = score_isolating_failures(self.model.score, events)
        if not outcome.failures:
            return events, outcome.scores
        for i, why in sorted(outcome.failures.items()):
            where = indices[i]
            origin = chunk.origin(where)
            value = chunk.values[where]
            rejects.append(reject_line(value, REASON_SCORING_ERROR, why, origin, self._model_extra))
        kept, _, scores = without_failures(outcome, events, indices)
        return kept, scores
