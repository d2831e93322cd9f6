"""One polled batch, from raw records to predictions and dead letters.

Validation, scoring and encoding each run once per batch: the domain validates every
value in one call, the champion pipeline scores every valid event in **one**
vectorised ``predict_proba`` call, and predictions are formatted from arrays. Only
when that call raises (a poison event that passed the schema) is the batch split in
halves until the culprits are alone; they are dead-lettered as ``scoring_error`` and
the rest are scored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING, Any

import numpy as np
from kafka import TopicPartition

from inferloop.domains import DomainSpec
from inferloop.worker.deadletter import REASON_SCORING_ERROR, DeadLetter, make_dead_letter

if TYPE_CHECKING:
    from inferloop.worker.model import ActiveModel

log = logging.getLogger(__name__)

PREDICTION_SCHEMA_VERSION = 1


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


ScoreFn = Callable[[Sequence[Any]], np.ndarray[Any, Any]]


@dataclass
class ScoringOutcome:
    """Scores aligned with the events, and the events that could not be scored."""

    scores: np.ndarray[Any, Any]
    ok: np.ndarray[Any, Any]
    failures: dict[int, str]


def score_isolating_failures(score: ScoreFn, events: Sequence[Any]) -> ScoringOutcome:
    """Score ``events`` in one call; if it raises, split until the culprits are alone.

    A score that is not finite counts as a failure of that event too.
    """
    n = len(events)
    scores = np.full(n, np.nan, dtype=np.float64)
    failures: dict[int, str] = {}
    pending = [np.arange(n)]
    while pending:
        idx = pending.pop()
        if idx.size == 0:
            continue
        try:
            part = np.asarray(score([events[i] for i in idx.tolist()] if idx.size < n else events))
        except Exception as exc:  # a model may raise anything; the event is dead-lettered
            log.debug("scoring %d events raised; isolating", idx.size, exc_info=True)
            if idx.size == 1:
                failures[int(idx[0])] = f"{type(exc).__name__}: {exc}"
                log.warning("scoring failed for one event: %s: %s", type(exc).__name__, exc)
            else:
                mid = idx.size // 2
                pending.extend((idx[mid:], idx[:mid]))
            continue
        scores[idx] = part
    bad = ~np.isfinite(scores)
    for i in np.flatnonzero(bad):
        failures.setdefault(int(i), "the model returned a score that is not a finite number")
    return ScoringOutcome(scores=scores, ok=~bad, failures=failures)


class BatchProcessor:
    """Turns a polled batch into predictions and dead letters with the model it is given."""

    def __init__(
        self,
        spec: DomainSpec,
        *,
        worker_name: str,
        max_request_size: int,
        fault: Callable[[str], None] = lambda point: None,
    ) -> None:
        self._spec = spec
        self._domain = spec.name
        self._worker_name = worker_name
        self._max_request_size = max_request_size
        self._fault = fault
        negative, positive = spec.label_names
        self._label_json = (
            encode_basestring_ascii(negative),
            encode_basestring_ascii(positive),
        )

    def process(self, batch: Batch, model: ActiveModel, *, give_up: str | None = None) -> None:
        """Fill ``batch`` with its predictions and dead letters.

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
        outcome = score_isolating_failures(model.score, events)
        batch.scoring_s = time.perf_counter() - started
        indices = validated.indices
        for i, why in sorted(outcome.failures.items()):
            self._dead_letter(batch, batch.records[indices[i]], REASON_SCORING_ERROR, why,
                              now_iso=now_iso, model_ref=model.ref)  # fmt: skip
        if outcome.failures:
            keep = np.flatnonzero(outcome.ok)
            events = [events[i] for i in keep]
            indices = [indices[i] for i in keep]
            scores = outcome.scores[keep]
        else:
            scores = outcome.scores
        self._encode(batch, events, scores, model, now_iso)
        batch.record_timestamps_ms = np.fromiter(
            (batch.records[i].timestamp for i in indices), dtype=np.float64, count=len(indices)
        )

    def _encode(
        self,
        batch: Batch,
        events: Sequence[Any],
        scores: np.ndarray[Any, Any],
        model: ActiveModel,
        now_iso: str,
    ) -> None:
        positive = scores >= model.threshold
        batch.positives = int(positive.sum())
        labels = self._label_json
        head = '{"event_id":'
        middle = f',"domain":"{self._domain}","label":'
        tail = f',"threshold":{model.threshold!r},"model":{model.ref_json},"event_time":"'
        end = f'","predicted_at":"{now_iso}","schema_version":{PREDICTION_SCHEMA_VERSION}}}'
        ids = [e.id for e in events]
        batch.keys = [i.encode() for i in ids]
        batch.predictions = [
            (
                f'{head}{encode_basestring_ascii(i)}{middle}{labels[p]},"score":{s!r}'
                f"{tail}{e.event_time.isoformat()}{end}"
            ).encode()
            for i, p, s, e in zip(ids, positive.tolist(), scores.tolist(), events, strict=True)
        ]

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
