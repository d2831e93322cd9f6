"""Valid events of each domain, as dicts and as JSON bytes, for tests to spoil."""

from __future__ import annotations

import json
from typing import Any

import numpy as np


def email_dict(i: int = 0, **changes: Any) -> dict[str, Any]:
    """A valid email event as a dict."""
    event: dict[str, Any] = {
        "id": f"email-{i}",
        "event_time": f"2024-05-01T12:{i % 60:02d}:00+02:00",
        "schema_version": 1,
        "sender": "Alice <alice@example.org>",
        "recipients": ["bob@example.com"],
        "subject": f"Meeting {i}",
        "body": "Shall we meet on Tuesday to go over the quarterly figures?",
        "headers": {"content-type": "text/plain; charset=utf-8", "x-mailer": "Thunderbird 115"},
    }
    event.update(changes)
    return event


def transaction_dict(i: int = 0, **changes: Any) -> dict[str, Any]:
    """A valid transaction event as a dict."""
    rng = np.random.default_rng(i)
    event: dict[str, Any] = {
        "id": f"tx-{i}",
        "event_time": f"2013-09-01T00:00:{i % 60:02d}Z",
        "schema_version": 1,
        "amount": 12.5,
        "card_id": "card-1",
    }
    event.update({f"v{k}": float(v) for k, v in enumerate(rng.normal(size=28), start=1)})
    event.update(changes)
    return event


def encode(event: dict[str, Any]) -> bytes:
    """JSON bytes of a dict, as a producer would send them."""
    return json.dumps(event).encode()


def without(event: dict[str, Any], name: str) -> dict[str, Any]:
    """A copy of ``event`` without field ``name``."""
    return {k: v for k, v in event.items() if k != name}
