"""Schedules (cron or interval, in UTC) and the claim that makes a firing run once.

Interval schedules start at a fixed instant (2000-01-01 UTC), so every service
instance computes the same fire times whenever it started; each firing is then
claimed in Redis with ``SET NX`` on the domain and the fire time, and only the
instance that claimed it runs it.
"""

from __future__ import annotations

import logging
import re
import threading
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from apscheduler.executors.base import run_job
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from inferloop.keys import Keys
from inferloop.retrain.errors import ScheduleError

log = logging.getLogger(__name__)

INTERVAL_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
OFF = "off"


def parse_schedule(text: str, what: str = "schedule") -> BaseTrigger | None:
    """A trigger for ``text``: an interval ("90s", "15m", "1h", "1d"), a cron
    expression ("0 * * * *"), or "off" (None); ScheduleError naming ``what`` otherwise."""
    if text.strip().lower() == OFF:
        return None
    match = _INTERVAL.match(text)
    if match:
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
        if seconds <= 0:
            raise ScheduleError(f"{what}: an interval must be longer than zero, not {text!r}")
        return IntervalTrigger(seconds=seconds, start_date=INTERVAL_ORIGIN, timezone=UTC)
    try:
        return CronTrigger.from_crontab(text, timezone=UTC)
    except ValueError as exc:
        raise ScheduleError(
            f"{what}: {text!r} is neither an interval (90s, 15m, 1h, 1d), a cron expression "
            f"(minute hour day month weekday) nor 'off': {exc}"
        ) from exc


def fire_stamp(fire_time: datetime) -> str:
    """The fire time as it appears in the claim key (epoch milliseconds)."""
    return str(round(fire_time.timestamp() * 1000))


def claim_firing(
    client: redis.Redis,
    keys: Keys,
    domain: str,
    *,
    fire_time: datetime,
    instance: str,
    ttl: timedelta,
) -> bool:
    """Claim one firing for this instance (``SET NX``); False when another has it."""
    key = keys.retrain_fire(domain, fire_stamp(fire_time))
    return bool(client.set(key, instance, nx=True, px=int(ttl.total_seconds() * 1000)))


# -- passing each firing's scheduled time to the job -------------------------------------
_firing = threading.local()


def scheduled_fire_time() -> datetime | None:
    """In a scheduled job: the time it was scheduled for (the latest, when coalesced)."""
    return getattr(_firing, "time", None)


def _run_firing(job: Any, jobstore_alias: str, run_times: list[datetime], logger_name: str) -> Any:
    _firing.time = run_times[-1] if run_times else None
    try:
        return run_job(job, jobstore_alias, run_times, logger_name)
    finally:
        _firing.time = None


class FiringExecutor(ThreadPoolExecutor):  # type: ignore[misc]
    """APScheduler's thread pool, telling each job the fire time it runs for.

    Jobs cannot ask APScheduler 3 for their scheduled time, and the claim must name
    it (the time a thread happens to start differs between instances).
    """

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        def done(future: Future[Any]) -> None:
            exc = future.exception()
            if exc is not None:
                self._run_job_error(job.id, exc, exc.__traceback__)
            else:
                self._run_job_success(job.id, future.result())

        submitted: Future[Any] = self._pool.submit(
            _run_firing, job, job._jobstore_alias, run_times, self._logger.name
        )
        submitted.add_done_callback(done)
