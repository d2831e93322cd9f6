"""The retrain trigger schema in the core: entries round-trip, a deterministic id is added once."""

from __future__ import annotations

import pytest
import redis

from inferloop.keys import Keys
from inferloop.settings import Settings
from inferloop.triggers import Trigger, TriggerEntryError, publish, publish_once


def _trigger(trigger_id: str = "monitor-emails-floor-7") -> Trigger:
    return Trigger(
        trigger_id,
        "emails",
        False,
        "monitor",
        "2025-01-01T00:00:00Z",
        seed=3,
        params={"model__C": 0.5},
    )


def test_an_entry_round_trips() -> None:
    sent = _trigger()
    got = Trigger.from_entry("1-0", sent.fields())
    assert got == Trigger(**{**sent.__dict__, "entry_id": "1-0"})


def test_an_entry_without_a_domain_is_refused() -> None:
    with pytest.raises(TriggerEntryError):
        Trigger.from_entry("1-0", {"trigger_id": "x", "domain": "sms"})


def test_a_deterministic_id_is_added_once(settings: Settings, redis_client: redis.Redis) -> None:
    keys = Keys(settings.redis.key_prefix)
    first = publish_once(redis_client, keys, _trigger(), dedupe_s=60)
    again = publish_once(redis_client, keys, _trigger(), dedupe_s=60)
    other = publish_once(redis_client, keys, _trigger("monitor-emails-floor-8"), dedupe_s=60)
    assert first is not None
    assert other is not None
    assert again is None
    assert redis_client.xlen(keys.retrain_triggers()) == 2
    assert 0 < redis_client.ttl(keys.retrain_sent("monitor-emails-floor-7")) <= 60


def test_a_plain_publish_adds_every_time(settings: Settings, redis_client: redis.Redis) -> None:
    keys = Keys(settings.redis.key_prefix)
    publish(redis_client, keys, _trigger())
    publish(redis_client, keys, _trigger())
    assert redis_client.xlen(keys.retrain_triggers()) == 2
