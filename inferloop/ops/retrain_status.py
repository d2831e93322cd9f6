"""A domain's retrain status, read as plain records for the console.

The retrain service writes the status hash (``retrain/status.py``: last run, last run of
each outcome, last success, next run) and holds the lease key while it runs. Here they
are read without the retrain package: each run is the JSON the service stored, as a
dict, so a field the service adds later shows without a change here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import redis

from inferloop.keys import Keys

# The status hash's fields (the retrain service writes them through retrain/status.py).
LAST_RUN = "last_run"
LAST_RUN_AT = "last_run_at"
LAST_SUCCESS_AT = "last_success_at"
NEXT_RUN_AT = "next_run_at"
# The field holding the last run of one outcome: ``last:<outcome>``.
BY_OUTCOME = "last:"


@dataclass(frozen=True)
class RetrainView:
    """What Redis says about one domain's retraining, as the console shows it."""

    domain: str
    last_run: dict[str, Any] | None
    last_success_at: str | None
    next_run_at: str | None
    running: str | None
    last_by_outcome: dict[str, dict[str, Any]] = field(default_factory=dict)


def read_retrain(client: redis.Redis, keys: Keys, domain: str) -> RetrainView:
    """The domain's retrain status; ``running`` is the lease's token, or None."""
    raw = {_text(k): _text(v) for k, v in client.hgetall(keys.retrain_status(domain)).items()}
    holder = client.get(keys.retrain_lock(domain))
    return RetrainView(
        domain=domain,
        last_run=_run(raw.get(LAST_RUN)),
        last_success_at=raw.get(LAST_SUCCESS_AT) or None,
        next_run_at=raw.get(NEXT_RUN_AT) or None,
        running=_text(holder) if holder is not None else None,
        last_by_outcome={
            name[len(BY_OUTCOME) :]: run
            for name, value in sorted(raw.items())
            if name.startswith(BY_OUTCOME) and (run := _run(value)) is not None
        },
    )


def _run(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def _text(value: bytes | str) -> str:
    """A reply as text, whether the client decodes replies or not."""
    return value.decode() if isinstance(value, bytes) else value
