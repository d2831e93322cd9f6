"""Schedules from the settings, and the claim that makes a firing run once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from inferloop.keys import Keys
from inferloop.retrain.errors import ScheduleError
from inferloop.retrain.schedule import claim_firing, parse_schedule
from inferloop.settings import Settings


def test_intervals_are_aligned_so_instances_agree_on_fire_times() -> None:
    trigger = parse_schedule("15m")
    assert isinstance(trigger, IntervalTrigger)
    now = datetime(2025, 3, 4, 10, 7, 31, tzinfo=UTC)
    first = trigger.get_next_fire_time(None, now)
    assert first == datetime(2025, 3, 4, 10, 15, tzinfo=UTC)


def test_cron_runs_in_utc_and_off_schedules_nothing() -> None:
    trigger = parse_schedule("30 2 * * *")
    assert isinstance(trigger, CronTrigger)
    now = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)
    assert trigger.get_next_fire_time(None, now) == datetime(2025, 3, 5, 2, 30, tzinfo=UTC)
    assert parse_schedule("off") is None


@pytest.mark.parametrize("text", ["every hour", "0 * *", "-5m", ""])
def test_a_bad_schedule_names_the_setting(text: str) -> None:
    with pytest.raises(ScheduleError, match="INFERLOOP_RETRAIN__EMAILS_SCHEDULE"):
        parse_schedule(text, "INFERLOOP_RETRAIN__EMAILS_SCHEDULE")


def test_a_firing_is_claimed_once(settings: Settings, redis_client: redis.Redis) -> None:
    keys = Keys(settings.redis.key_prefix)
    fire = datetime(2025, 3, 4, 10, 15, tzinfo=UTC)
    ttl = timedelta(minutes=5)
    first = claim_firing(redis_client, keys, "emails", fire_time=fire, instance="a", ttl=ttl)
    second = claim_firing(redis_client, keys, "emails", fire_time=fire, instance="b", ttl=ttl)
    other_domain = claim_firing(
        redis_client, keys, "transactions", fire_time=fire, instance="b", ttl=ttl
    )
    assert (first, second, other_domain) == (True, False, True)
    assert redis_client.get(keys.retrain_fire("emails", "1741083300000")) == b"a"
