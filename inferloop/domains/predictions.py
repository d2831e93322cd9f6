"""Predictions as they are published, and scoring that isolates the events a model
cannot score.

Both the worker and ``inferloop score`` build their predictions here, so a prediction
from a batch run is byte-identical in format to the worker's (``predicted_at`` aside),
and an event that breaks the model is set aside the same way by both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import Any, TypeVar

import numpy as np

from inferloop.domains.schemas import PREDICTIONS_SCHEMA_VERSION

log = logging.getLogger(__name__)

# The reason of an event that passed validation but that the model could not score.
REASON_SCORING_ERROR = "scoring_error"

ScoreFn = Callable[[Sequence[Any]], np.ndarray[Any, Any]]
E = TypeVar("E")


@dataclass
class ScoringOutcome:
    """Scores aligned with the events, and the events that could not be scored."""

    scores: np.ndarray[Any, Any]
    ok: np.ndarray[Any, Any]
    failures: dict[int, str]


def without_failures(
    outcome: ScoringOutcome, events: list[E], positions: list[int]
) -> tuple[list[E], list[int], np.ndarray[Any, Any]]:
    """``events`` and their ``positions`` less those the model failed to score, and the
    scores of the rest (the lists themselves when none failed: nothing is copied)."""
    if not outcome.failures:
        return events, positions, outcome.scores
    keep = np.flatnonzero(outcome.ok)
    kept = keep.tolist()
    return [events[i] for i in kept], [positions[i] for i in kept], outcome.scores[keep]


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
        except Exception as exc:  # a model may raise anything; the event is set aside
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


@dataclass(frozen=True)
class Encoded:
    """A batch's predictions: keys (event ids) and JSON values, aligned, and how many
    are positive."""

    keys: list[bytes]
    values: list[bytes]
    positives: int


class PredictionEncoder:
    """Formats the predictions of one domain from arrays, one f-string per event."""

    def __init__(self, domain: str, label_names: tuple[str, str]) -> None:
        self._domain = domain
        negative, positive = label_names
        self._label_json = (encode_basestring_ascii(negative), encode_basestring_ascii(positive))

    def encode(
        self,
        events: Sequence[Any],
        scores: np.ndarray[Any, Any],
        *,
        threshold: float,
        model_json: str,
        predicted_at: str,
        extra: str = "",
    ) -> Encoded:
        """The predictions of ``events`` scored ``scores`` (label: ``score >= threshold``);
        ``model_json`` is the pre-encoded ``{"name":..,"version":..}`` object, ``extra``
        pre-encoded JSON members (``,"role":"challenger"``) put last."""
        positive = scores >= threshold
        labels = self._label_json
        head = '{"event_id":'
        middle = f',"domain":"{self._domain}","label":'
        tail = f',"threshold":{threshold!r},"model":{model_json},"event_time":"'
        end = (
            f'","predicted_at":"{predicted_at}",'
            f'"schema_version":{PREDICTIONS_SCHEMA_VERSION}{extra}}}'
        )
        ids = [e.id for e in events]
        values = [
            (
                f'{head}{encode_basestring_ascii(i)}{middle}{labels[p]},"score":{s!r}'
                f"{tail}{e.event_time.isoformat()}{end}"
            ).encode()
            for i, p, s, e in zip(ids, positive.tolist(), scores.tolist(), events, strict=True)
        ]
        return Encoded([i.encode() for i in ids], values, int(positive.sum()))
