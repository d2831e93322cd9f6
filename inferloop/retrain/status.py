"""Each domain's retrain status in Redis: last run, last run of each outcome, next run."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
from redis.typing import EncodableT, FieldT

from inferloop.connections import redis_address, redis_unavailable
from inferloop.keys import Keys
from inferloop.ops.retrain_status import BY_OUTCOME as _BY_OUTCOME
from inferloop.ops.retrain_status import LAST_RUN, LAST_RUN_AT, LAST_SUCCESS_AT, NEXT_RUN_AT
from inferloop.retrain.errors import RetrainPermissionError
from inferloop.retrain.lock import HolderInfo, LeaseLock
from inferloop.retrain.outcome import OUTCOMES, RunOutcome
from inferloop.settings import RedisSettings

log = logging.getLogger(__name__)


@contextmanager
def redis_errors(settings: RedisSettings) -> Iterator[None]:
    """Turn an unreachable Redis into the error that names its address."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise redis_unavailable(settings, exc) from exc
    except redis.exceptions.NoPermissionError as exc:
        user = settings.username or "default"
        raise RetrainPermissionError(
            f"Redis user {user!r} at {redis_address(settings)} may not do this: {exc} "
            "(an operator's ACL queues triggers for the retrain service; it cannot take "
            "the retrain lock)"
        ) from exc


def utc_now() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO 8601 with the zone, to the millisecond."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class DomainStatus:
    """What Redis says about one domain's retraining.

    ``last_success_at`` is when a run last reached a decision or rightly found nothing
    to do (a skip counts: the service is alive); ``last_by_outcome`` keeps the last run
    of each outcome apart, so a skip never reads as a promotion.
    """

    domain: str
    last_run: RunOutcome | None
    last_success_at: str | None
    next_run_at: str | None
    running: HolderInfo | None
    last_by_outcome: dict[str, RunOutcome] = field(default_factory=dict)


def record_run(client: redis.Redis, keys: Keys, outcome: RunOutcome) -> None:
    """Store ``outcome`` as the domain's last run, and as its last run of that outcome
    (and its last success when it was one)."""
    record = outcome.to_json()
    fields: dict[FieldT, EncodableT] = {
        LAST_RUN: record,
        LAST_RUN_AT: outcome.finished_at,
        f"{_BY_OUTCOME}{outcome.outcome}": record,
    }
    if outcome.successful:
        fields[LAST_SUCCESS_AT] = outcome.finished_at
    try:
        client.hset(keys.retrain_status(outcome.domain), mapping=fields)
    except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.NoPermissionError) as exc:
        # The outcome is logged and returned either way; the status is a convenience.
        log.warning("recording the %s run status failed: %s", outcome.domain, exc)


def record_next_run(client: redis.Redis, keys: Keys, domain: str, when: datetime | None) -> None:
    """Store when the domain's next scheduled run is due (empty: none scheduled).

    Fields are overwritten, never deleted: the retrain ACL user has no HDEL.
    """
    client.hset(keys.retrain_status(domain), NEXT_RUN_AT, "" if when is None else iso(when))


def read_status(client: redis.Redis, keys: Keys, domain: str, lease_s: float) -> DomainStatus:
    """The domain's status, and who runs it right now."""
    raw = {_text(k): _text(v) for k, v in client.hgetall(keys.retrain_status(domain)).items()}
    last = raw.get(LAST_RUN)
    running = LeaseLock(client, keys.retrain_lock(domain), lease_s).holder()
    return DomainStatus(
        domain=domain,
        last_run=RunOutcome.from_json(last) if last else None,
        last_success_at=raw.get(LAST_SUCCESS_AT),
        next_run_at=raw.get(NEXT_RUN_AT) or None,
        running=running,
        last_by_outcome={
            name: RunOutcome.from_json(raw[f"{_BY_OUTCOME}{name}"])
            for name in OUTCOMES
            if f"{_BY_OUTCOME}{name}" in raw
        },
    )


def _text(value: bytes | str) -> str:
    """A reply as text, whether the client decodes replies or not."""
    return value.decode() if isinstance(value, bytes) else value
