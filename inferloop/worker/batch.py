"""One polled batch, from raw records to predictions and dead letters.

Validation, scoring and encoding each run once per batch: the domain validates every
value in one call, the champion pipeline scores every valid event in **one**
vectorised ``predict_proba`` call, and predictions are formatted from arrays. Only
when that call raises (a poison event that passed the schema) is the batch split in
halves until the culprits are alone; they are dead-lettered as ``scoring_error`` and
the rest are scored.

With a challenger (see :mod:`inferloop.worker.shadow`) the champion's call is the same
and its rows are built once: the challenger scores the sampled ones among them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from kafka import TopicPartition

from inferloop.domains import DomainSpec
from inferloop.domains.predictions import (
    REASON_SCORING_ERROR,
    PredictionEncoder,
    score_isolating_failures,
    without_failures,
)
from inferloop.worker.deadletter import DeadLetter, make_dead_letter
from inferloop.worker.shadow import (
    ROLE_MEMBER,
    ShadowOutput,
    ShadowRecords,
    SharedRows,
    sampled_indices,
)

if TYPE_CHECKING:
    from inferloop.worker.model import ActiveModel

# Scoring and encoding moved to inferloop/domains/predictions.py (``inferloop score``
# uses them too); score_isolating_failures is still exported from here.
__all__ = ["Batch", "BatchProcessor", "batch_of", "score_isolating_failures"]

log = logging.getLogger(__name__)


@runtime_checkable
class ColumnRows(Protocol):
    """A domain that builds rows with only some of their columns filled in."""

    def rows_for(self, events: Sequence[Any], columns: Collection[int]) -> Any:
        """The rows of ``events``, only ``columns`` filled in."""


@dataclass(slots=True)
class Batch:
    """A polled batch and what became of it, ready to be delivered."""

    records: list[Any]
    first_offsets: dict[TopicPartition, int]
    next_offsets: dict[TopicPartition, int]
    keys: list[bytes] = field(default_factory=list)
    predictions: list[bytes] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    version: int | None = None
    positives: int = 0
    polled_at: float = field(default_factory=time.monotonic)
    scoring_s: float = 0.0
    record_timestamps_ms: np.ndarray[Any, Any] | None = None
    extra_fields: int = 0
    attempt_keys: list[str] = field(default_factory=list)
    shadow: ShadowRecords | None = None

    def __len__(self) -> int:
        return len(self.records)


def batch_of(records_by_partition: dict[TopicPartition, list[Any]]) -> Batch:
    """A :class:`Batch` of the records ``consumer.poll`` returned, partitions in turn."""
    records: list[Any] = []
    first: dict[TopicPartition, int] = {}
    after: dict[TopicPartition, int] = {}
    for tp, part in records_by_partition.items():
        if part:
            records.extend(part)
            first[tp] = part[0].offset
            after[tp] = part[-1].offset + 1
    return Batch(records=records, first_offsets=first, next_offsets=after)


class BatchProcessor:
    """Turns a polled batch into predictions and dead letters with the model it is given."""

    def __init__(
        self,
        spec: DomainSpec,
        *,
        worker_name: str,
        max_request_size: int,
        fault: Callable[[str], None] = lambda point: None,
        shadow: ShadowOutput | None = None,
    ) -> None:
        self._spec = spec
        self._shadow = shadow
        self._domain = spec.name
        self._worker_name = worker_name
        self._max_request_size = max_request_size
        self._fault = fault
        self._encoder = PredictionEncoder(spec.name, spec.label_names)

    def process(
        self,
        batch: Batch,
        model: ActiveModel,
        *,
        give_up: str | None = None,
        challenger: ActiveModel | None = None,
    ) -> None:
        """Fill ``batch`` with its predictions and dead letters (and, with a
        ``challenger`` and a shadow output, its shadow records).

        ``give_up`` set (the batch failed too often before): every valid event is
        dead-lettered as ``scoring_error`` with that detail, nothing is scored.
        """
        started = time.perf_counter()
        now_iso = datetime.now(UTC).isoformat()
        values = [r.value for r in batch.records]
        validated = self._spec.validate_batch(values)
        batch.extra_fields = validated.extra_fields
        for reject in validated.rejects:
            record = batch.records[reject.index]
            self._dead_letter(batch, record, reject.reason, reject.detail, now_iso=now_iso)
        events = validated.events
        batch.version = model.version
        if not events:
            batch.scoring_s = time.perf_counter() - started
            return
        if give_up is not None:
            for i in validated.indices:
                self._dead_letter(batch, batch.records[i], REASON_SCORING_ERROR, give_up,
                                  now_iso=now_iso, model_ref=model.ref)  # fmt: skip
            batch.scoring_s = time.perf_counter() - started
            return
        self._fault("scoring")
        shared = SharedRows(events) if challenger is not None and self._shadow else None
        outcome = score_isolating_failures(
            self._champion_score(model) if shared is None else shared.scorer(model), events
        )
        batch.scoring_s = time.perf_counter() - started
        indices = validated.indices
        for i, why in sorted(outcome.failures.items()):
            self._dead_letter(batch, batch.records[indices[i]], REASON_SCORING_ERROR, why,
                              now_iso=now_iso, model_ref=model.ref)  # fmt: skip
        events, indices, scores = without_failures(outcome, events, indices)
        self._encode(batch, events, scores, model, now_iso)
        batch.record_timestamps_ms = np.fromiter(
            (batch.records[i].timestamp for i in indices), dtype=np.float64, count=len(indices)
        )
        if shared is not None and challenger is not None:
            # The rows are the champion's only when every event was scored in one call.
            rows = shared.rows if not outcome.failures else None
            batch.shadow = self._shadow_records(events, rows, challenger, now_iso)

    def _champion_score(self, model: ActiveModel) -> Callable[[Sequence[Any]], Any]:
        """``model.score``, or, when the scorer says which columns of a row it reads and
        the domain can build only those, its scorer of rows with only those filled in
        (the same scores: the emails model reads no header tokens)."""
        columns = getattr(model.scorer, "columns", None)
        spec = self._spec
        if columns is None or not isinstance(spec, ColumnRows):
            return model.score
        scorer = model.scorer
        return lambda events: scorer(spec.rows_for(events, columns))

    def _shadow_records(
        self, events: Sequence[Any], rows: Any, challenger: ActiveModel, now_iso: str
    ) -> ShadowRecords:
        """The challenger's predictions of the sampled ``events`` (``rows``: theirs, or
        None to build them); a failure of the challenger is counted, never raised."""
        assert self._shadow is not None
        out = self._shadow
        idx = sampled_indices([e.id for e in events], out.sample)
        picked = events if idx.size == len(events) else [events[i] for i in idx.tolist()]
        records = ShadowRecords(out, challenger.version, [], [])
        if not picked:
            return records
        try:
            if rows is None:
                scores = np.asarray(challenger.score(picked), dtype=np.float64)
            else:
                part = rows if idx.size == len(events) else self._spec.take_rows(rows, idx)
                scores = np.asarray(challenger.scorer(part), dtype=np.float64)
        except Exception as exc:  # the challenger's failure is the challenger's only
            log.debug("challenger v%d raised", challenger.version, exc_info=True)
            log.warning("challenger v%d failed to score %d events: %s: %s",
                        challenger.version, len(picked), type(exc).__name__, exc)  # fmt: skip
            out.count("unscored", len(picked))
            return records
        finite = np.isfinite(scores)
        if not finite.all():
            out.count("unscored", int((~finite).sum()))
            keep = np.flatnonzero(finite)
            picked, scores = [picked[i] for i in keep.tolist()], scores[keep]
        encoded = self._encoder.encode(
            picked, scores, threshold=challenger.threshold, model_json=challenger.ref_json,
            predicted_at=now_iso, extra=ROLE_MEMBER,
        )  # fmt: skip
        records.keys, records.values = encoded.keys, encoded.values
        return records

    def _encode(
        self,
        batch: Batch,
        events: Sequence[Any],
        scores: np.ndarray[Any, Any],
        model: ActiveModel,
        now_iso: str,
    ) -> None:
        encoded = self._encoder.encode(
            events, scores, threshold=model.threshold, model_json=model.ref_json,
            predicted_at=now_iso,
        )  # fmt: skip
        batch.keys, batch.predictions = encoded.keys, encoded.values
        batch.positives = encoded.positives

    def _dead_letter(
        self,
        batch: Batch,
        record: Any,
        reason: str,
        detail: str,
        *,
        now_iso: str,
        model_ref: str | None = None,
    ) -> None:
        batch.dead_letters.append(
            make_dead_letter(
                record,
                reason,
                detail,
                time_iso=now_iso,
                worker=self._worker_name,
                max_request_size=self._max_request_size,
                model=model_ref,
            )
        )
