"""Turning raw message bytes into validated events, with a precise reason for each reject.

The fast path hands each message to pydantic's JSON validator (one call into compiled
code: parse and validate together). Only a message that fails is looked at again, by
:func:`diagnose`, to name exactly what is wrong with it; good messages never pay for
the diagnosis.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from inferloop.domains import schemas as s

M = TypeVar("M", bound=BaseModel)

# pydantic's error types, mapped onto the reasons of inferloop.domains.schemas.
_ERROR_REASONS: dict[str, str] = {
    "missing": s.MISSING_FIELD,
    "model_type": s.NOT_OBJECT,
    "model_attributes_type": s.NOT_OBJECT,
    "string_too_long": s.OVERSIZE_FIELD,
    "too_long": s.OVERSIZE_FIELD,
    "finite_number": s.NOT_FINITE,
    "timezone_aware": s.NAIVE_TIME,
    "datetime_parsing": s.BAD_TIME,
    "datetime_from_date_parsing": s.BAD_TIME,
    "datetime_object_invalid": s.BAD_TIME,
    "string_unicode": s.LONE_SURROGATE,
}
_BAD_VALUE_TYPES = frozenset(
    {
        "string_too_short",
        "too_short",
        "literal_error",
        "greater_than_equal",
        "greater_than",
        "less_than_equal",
        "less_than",
        "string_pattern_mismatch",
    }
)
_SURROGATE = re.compile("[\ud800-\udfff]")
_DETAIL_CHARS = 200


def reason_of(error: ErrorDetails) -> str:
    """The reject reason for one pydantic error (wrong_type for any type mismatch)."""
    kind = error["type"]
    if kind in _ERROR_REASONS:
        return _ERROR_REASONS[kind]
    if kind in _BAD_VALUE_TYPES:
        return s.BAD_VALUE
    return s.WRONG_TYPE


def describe(error: ErrorDetails) -> str:
    """``field: message`` for one pydantic error, short enough for a header."""
    where = ".".join(str(part) for part in error["loc"]) or "(message)"
    return f"{where}: {error['msg']}"[:_DETAIL_CHARS]


def reject_from_error(index: int, exc: ValidationError, raw: bytes) -> s.Reject:
    """The reject for a message that pydantic refused, diagnosed when the JSON was bad."""
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        reason, detail = diagnose(raw)
        return s.Reject(index, reason, detail or describe(first))
    return s.Reject(index, reason_of(first), describe(first))


def diagnose(raw: bytes) -> tuple[str, str]:
    """Why ``raw`` is not a JSON document that an event could be: (reason, detail)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return s.NOT_UTF8, f"invalid UTF-8 at byte {exc.start}"
    try:
        document = json.loads(text)
    except RecursionError:
        # Python's parser recurses per level and gives up near 1,000 levels.
        return s.TOO_DEEP, "nested too deep for the JSON parser"
    except ValueError as exc:
        return s.NOT_JSON, str(exc)[:_DETAIL_CHARS]
    depth = json_depth(document)
    if depth > s.MAX_JSON_DEPTH:
        return s.TOO_DEEP, f"nested {depth} levels deep, at most {s.MAX_JSON_DEPTH} allowed"
    where = find_lone_surrogate(document)
    if where is not None:
        return s.LONE_SURROGATE, f"{where}: a string holds half of a surrogate pair"
    return s.NOT_JSON, ""


def json_depth(document: Any) -> int:
    """How deeply ``document`` nests arrays and objects (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth + 1)
        # Anything deeper than the limit is enough to know.
        if deepest > s.MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def find_lone_surrogate(document: Any) -> str | None:
    """The path of the first string (key or value) holding a lone surrogate, if any."""
    stack: list[tuple[Any, str]] = [(document, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                return path or "(message)"
        elif isinstance(node, dict):
            for key, value in node.items():
                if _SURROGATE.search(key):
                    return f"{path}.{key!a}" if path else f"{key!a}"
                stack.append((value, f"{path}.{key}" if path else key))
        elif isinstance(node, list):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node))
    return None


def validate_values(
    model: type[M], values: Sequence[bytes | None]
) -> tuple[list[M], list[int], list[s.Reject], int]:
    """Validate each message of a batch as ``model``: (valid, their indices, rejects, extras).

    Extra fields are counted, then dropped from the event so that they cost no memory
    downstream and never reach the model.
    """
    # The compiled validator itself: model_validate_json adds a Python call per message.
    validate = model.__pydantic_validator__.validate_json
    events: list[M] = []
    indices: list[int] = []
    rejects: list[s.Reject] = []
    extra_fields = 0
    for index, raw in enumerate(values):
        if raw is None:
            rejects.append(s.Reject(index, s.NULL_VALUE, "the record has no value"))
            continue
        if len(raw) > s.MAX_EVENT_BYTES:
            detail = f"{len(raw)} bytes, at most {s.MAX_EVENT_BYTES} allowed"
            rejects.append(s.Reject(index, s.OVERSIZE_EVENT, detail))
            continue
        try:
            event = validate(raw)
        except ValidationError as exc:
            rejects.append(reject_from_error(index, exc, raw))
            continue
        extra = event.__pydantic_extra__
        if extra:
            extra_fields += len(extra)
            object.__setattr__(event, "__pydantic_extra__", {})
        events.append(event)
        indices.append(index)
    return events, indices, rejects, extra_fields
