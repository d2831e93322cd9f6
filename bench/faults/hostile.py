"""Hostile input for the transactions stream: every way a message can be bad, each keyed
by an id of its own so it can be found again in the predictions or the dead letters.

Each :class:`Hostile` names the reason the worker must give it (its dead letter's
``dlq.reason``), or None when it is valid after all (a duplicate id is two valid events:
two predictions, both kept, since ids are the producer's promise, not the worker's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from inferloop.domains import schemas as s
from inferloop.worker.deadletter import REASON_TOO_LARGE

TEN_MB = 10 * 1024 * 1024
DEEP_LEVELS = 100_000


@dataclass(frozen=True)
class Hostile:
    """One message: what kind of bad it is, its key, its bytes, the reason its dead letter
    must carry (None: valid after all) and the reason validation gives it."""

    kind: str
    key: str
    value: bytes | None
    reason: str | None
    rejected_as: str | None


def valid_event(event_id: str, **changes: Any) -> dict[str, Any]:
    """A valid transaction event (features fixed, so a model scores it)."""
    event: dict[str, Any] = {
        "id": event_id,
        "event_time": "2024-03-01T10:00:00+01:00",
        "schema_version": 1,
        "amount": 42.5,
    }
    event.update({f"v{k}": 0.01 * k for k in range(1, 29)})
    event.update(changes)
    return event


def _json(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


def _without(event: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != field}


def hostile_messages(tag: str, copies: int = 2) -> list[Hostile]:
    """``copies`` of every kind of hostile message, keys ``<tag>-<kind>-<copy>``."""
    out: list[Hostile] = []
    for copy in range(copies):
        for kind, (value, reason) in _kinds(lambda kind, c=copy: _key(tag, kind, c)).items():
            # Larger than the producer may send: kept as its first 64 KiB, reason too_large.
            dlq_reason = REASON_TOO_LARGE if reason == s.OVERSIZE_EVENT else reason
            out.append(Hostile(kind, _key(tag, kind, copy), value, dlq_reason, reason))
    return out


def _key(tag: str, kind: str, copy: int) -> str:
    # Every copy of the duplicate carries the same id: one id, several events.
    return f"{tag}-{kind}" if kind == "duplicate_id" else f"{tag}-{kind}-{copy}"


def _kinds(key_of: Any) -> dict[str, tuple[bytes | None, str | None]]:
    def ok(kind: str, **changes: Any) -> dict[str, Any]:
        return valid_event(key_of(kind), **changes)

    deep = b"[" * DEEP_LEVELS + b"]" * DEEP_LEVELS
    pad = "x" * TEN_MB
    return {
        "malformed_json": (_json(ok("malformed_json"))[:40], s.NOT_JSON),
        "not_an_object": (b'["a", "list"]', s.NOT_OBJECT),
        "empty_value": (b"", s.NOT_JSON),
        "null_value": (None, s.NULL_VALUE),
        "non_utf8": (b'{"id": "\xff\xfe\xfa", "amount": 1}', s.NOT_UTF8),
        "lone_surrogate": (_json(ok("lone_surrogate", card_id="\ud800")), s.LONE_SURROGATE),
        "amount_as_string": (_json(ok("amount_as_string", amount="42.50")), s.WRONG_TYPE),
        "feature_as_list": (_json(ok("feature_as_list", v3=[1, 2])), s.WRONG_TYPE),
        "id_as_number": (_json(ok("id_as_number", id=12345)), s.WRONG_TYPE),
        "missing_amount": (_json(_without(ok("missing_amount"), "amount")), s.MISSING_FIELD),
        "missing_event_time": (
            _json(_without(ok("missing_event_time"), "event_time")),
            s.MISSING_FIELD,
        ),
        "oversize_card_id": (_json(ok("oversize_card_id", card_id="c" * 5000)), s.OVERSIZE_FIELD),
        "oversize_currency": (_json(ok("oversize_currency", currency="EURO")), s.OVERSIZE_FIELD),
        "nan_amount": (_json(ok("nan_amount", amount=float("nan"))), s.NOT_FINITE),
        "infinite_amount": (_json(ok("infinite_amount")).replace(b"42.5", b"1e999"), s.NOT_FINITE),
        "naive_time": (_json(ok("naive_time", event_time="2024-03-01T10:00:00")), s.NAIVE_TIME),
        "bad_time": (_json(ok("bad_time", event_time="yesterday")), s.BAD_TIME),
        "future_schema": (_json(ok("future_schema", schema_version=99)), s.UNSUPPORTED_VERSION),
        "deeply_nested": (deep, s.TOO_DEEP),
        "ten_mb_message": (_json(ok("ten_mb_message", note=pad)), s.OVERSIZE_EVENT),
        "ten_mb_string": (b'"' + pad.encode() + b'"', s.OVERSIZE_EVENT),
        "unknown_extra_field": (_json(ok("unknown_extra_field", loyalty_tier="gold")), None),
        "duplicate_id": (_json(ok("duplicate_id")), None),
    }


def expected_reason_counts(messages: list[Hostile]) -> dict[str, int]:
    """How many dead letters of each reason the messages must produce."""
    counts: dict[str, int] = {}
    for m in messages:
        if m.reason is not None:
            counts[m.reason] = counts.get(m.reason, 0) + 1
    return counts
