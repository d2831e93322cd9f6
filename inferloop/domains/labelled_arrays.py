"""Labelled transactions straight into arrays, without a pydantic object per record.

Retraining reads every labelled record of the log. Validating each one into a
:class:`~inferloop.domains.schemas.LabelledTransaction` costs tens of microseconds a
record (a model object with 35 fields and two datetimes), most of a million-record
read. The worker already validated these events on their way in, so this path parses
each record's JSON into a dict (pydantic's own JSON parser, ``pydantic_core.from_json``)
and checks exactly what the schema asks of the fields training uses and of the rest,
taking the common, plainly valid shape only: numbers that are JSON numbers, the known
label names, ids and strings within their limits, times in ISO 8601 with an offset.

Anything else (a bad record, or a valid one in an unusual spelling: an integer
schema_version beyond this code's, a time with a space instead of ``T``, a number
that overflows to infinity) is handed to the pydantic validator, record by record,
which accepts it or rejects it with its precise reason, as it always did. So the
result is the pydantic path's result, in the same order, for any input: the fast path
only ever accepts records that pydantic accepts, with the same values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any

import numpy as np
from pydantic_core import from_json

from inferloop.domains import schemas as s

# The row's numbers, in row order: v1 .. v28, amount.
_NUMBERS: tuple[str, ...] = (*s.TRANSACTION_FEATURES, "amount")
_REQUIRED: tuple[str, ...] = ("id", "event_time", "schema_version", "label", "labelled_at")
# The optional fields: (name, fewest characters, most); the ids alone may be null.
_OPTIONAL: tuple[tuple[str, int, int], ...] = (
    ("card_id", 0, s.MAX_ID_CHARS),
    ("merchant_id", 0, s.MAX_ID_CHARS),
    ("currency", 3, 3),
    ("label_source", 1, s.MAX_LABEL_SOURCE_CHARS),
)
# Every field the schema knows is required (present, once checked) or optional.
_PRESENT = len(_NUMBERS) + len(_REQUIRED)
if set(s.LabelledTransaction.model_fields) != {*_NUMBERS, *_REQUIRED, *(o[0] for o in _OPTIONAL)}:
    raise ImportError("labelled_arrays is out of step with LabelledTransaction's fields")
_types_of = frozenset
_ALL_FLOAT = frozenset({float})
_numbers_of = itemgetter(*_NUMBERS)
_required_of = itemgetter(*_REQUIRED)
# ISO 8601 as pydantic reads it too: date, "T", time with 1-6 fraction digits, an offset.
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})")
_time_match = _TIME.fullmatch
_fromisoformat = datetime.fromisoformat
# Integers that are exactly the same float whichever way they are converted.
_EXACT_INT = 2**53


def _epoch_s(text: Any) -> float | None:
    """Seconds since the epoch of an ISO 8601 time with an offset (None: not that)."""
    if type(text) is not str or _time_match(text) is None:
        return None
    try:
        # fromisoformat reads "Z" from Python 3.11 on.
        return _fromisoformat(text).timestamp()
    except ValueError:
        return None


def _plain_number(value: Any) -> bool:
    kind = type(value)
    return kind is float or (kind is int and -_EXACT_INT <= value <= _EXACT_INT)


def _short_str(value: Any, low: int, high: int) -> bool:
    # A lone surrogate never reaches here: pydantic_core's JSON parser refuses it.
    return type(value) is str and low <= len(value) <= high


def _document(raw: bytes) -> dict[str, Any] | None:
    """The JSON object of ``raw`` (None: too big, not JSON, not an object)."""
    if len(raw) > s.MAX_EVENT_BYTES:
        return None
    try:
        doc = from_json(raw, allow_inf_nan=False)
    except (ValueError, RecursionError):
        return None
    return doc if type(doc) is dict else None


def _plain_numbers(numbers: tuple[Any, ...]) -> bool:
    """JSON numbers that are finite floats (or integers a float holds exactly)."""
    if _types_of(map(type, numbers)) != _ALL_FLOAT and not all(map(_plain_number, numbers)):
        return False
    # Any infinity (1e400 parses to one) or NaN makes the sum non-finite; so can an
    # overflowing sum of finite numbers, which only sends a valid record the slow way.
    return math.isfinite(sum(numbers))


def _extra_fields(doc: dict[str, Any]) -> int | None:
    """How many fields the schema does not know (None: an optional field is not plain)."""
    extra = len(doc) - _PRESENT
    if extra:
        for name, low, high in _OPTIONAL:
            if name in doc:
                extra -= 1
                value = doc[name]
                if not _short_str(value, low, high) and (value is not None or low):
                    return None
    return extra


def parse_one(
    raw: bytes, labels: tuple[str, str], newest_version: int
) -> tuple[str, float, float, int, tuple[float, ...], int] | None:
    """(id, event time, labelled at, y, numbers, extra fields) of a plainly valid record.

    None for anything the fast path does not take, valid or not.
    """
    doc = _document(raw)
    if doc is None:
        return None
    try:
        numbers = _numbers_of(doc)
        event_id, event_time, version, label, labelled_at = _required_of(doc)
    except KeyError:
        return None
    plain = (
        (label == labels[0] or label == labels[1])
        and type(version) is int
        and 1 <= version <= newest_version
        and _short_str(event_id, 1, s.MAX_ID_CHARS)
        and _plain_numbers(numbers)
    )
    extra = _extra_fields(doc) if plain else None
    if extra is None:
        return None
    event_s = _epoch_s(event_time)
    labelled_s = _epoch_s(labelled_at)
    if event_s is None or labelled_s is None:
        return None
    return event_id, event_s, labelled_s, int(label == labels[1]), numbers, extra


def parse_labelled_transactions(
    values: Sequence[bytes | None],
    labels: tuple[str, str],
    newest_version: int,
    slow: Callable[[Sequence[bytes | None]], s.LabelledBatch],
) -> s.LabelledBatch:
    """Parse a batch of labelled transactions; ``slow`` (the pydantic path) takes the rest.

    ``slow`` gets the records the fast path did not take, as one batch; its examples
    and rejects are merged back at their records' positions.
    """
    ids: list[str] = []
    event_s: list[float] = []
    labelled_s: list[float] = []
    ys: list[int] = []
    numbers: list[tuple[float, ...]] = []
    fast_at: list[int] = []
    slow_at: list[int] = []
    extra = 0
    for index, raw in enumerate(values):
        parsed = None if raw is None else parse_one(raw, labels, newest_version)
        if parsed is None:
            slow_at.append(index)
            continue
        fast_at.append(index)
        ids.append(parsed[0])
        event_s.append(parsed[1])
        labelled_s.append(parsed[2])
        ys.append(parsed[3])
        numbers.append(parsed[4])
        extra += parsed[5]
    rows = (
        np.array(numbers, dtype=np.float64)
        if numbers
        else np.empty((0, len(_NUMBERS)), dtype=np.float64)
    )
    fast = s.LabelledBatch(
        ids=ids,
        event_time_s=np.array(event_s, dtype=np.float64),
        labelled_at_s=np.array(labelled_s, dtype=np.float64),
        y=np.array(ys, dtype=np.int8),
        rows=rows,
        extra_fields=extra,
    )
    if not slow_at:
        return fast
    return _merge(fast, fast_at, slow([values[i] for i in slow_at]), slow_at)


def _merge(
    fast: s.LabelledBatch, fast_at: list[int], slow: s.LabelledBatch, slow_at: list[int]
) -> s.LabelledBatch:
    """Both batches' examples in record order; the slow batch's rejects re-indexed."""
    rejects = [s.Reject(slow_at[r.index], r.reason, r.detail) for r in slow.rejects]
    rejected = {r.index for r in slow.rejects}
    slow_kept = [i for n, i in enumerate(slow_at) if n not in rejected]
    positions = np.array(fast_at + slow_kept, dtype=np.int64)
    order = np.argsort(positions, kind="stable")
    ids = fast.ids + slow.ids
    return s.LabelledBatch(
        ids=[ids[i] for i in order],
        event_time_s=np.concatenate([fast.event_time_s, slow.event_time_s])[order],
        labelled_at_s=np.concatenate([fast.labelled_at_s, slow.labelled_at_s])[order],
        y=np.concatenate([fast.y, slow.y])[order],
        rows=np.concatenate([fast.rows, slow.rows], axis=0)[order],
        rejects=sorted(rejects, key=lambda r: r.index),
        extra_fields=fast.extra_fields + slow.extra_fields,
    )
