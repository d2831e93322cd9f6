"""Operator triggers on a Redis Stream: acknowledged only after the outcome is stored."""

from __future__ import annotations

import redis

from inferloop.keys import Keys
from inferloop.retrain.outcome import RunOutcome
from inferloop.retrain.triggers import GROUP, Trigger, TriggerQueue, new_trigger_id
from inferloop.settings import Settings
from inferloop.triggers import publish_once


def _queue(settings: Settings, client: redis.Redis) -> TriggerQueue:
    queue = TriggerQueue(client, Keys(settings.redis.key_prefix), outcome_ttl_s=60)
    queue.ensure_group()
    return queue


def _trigger(domain: str = "emails") -> Trigger:
    return Trigger(new_trigger_id(), domain, False, "test", "2025-01-01T00:00:00Z")  # type: ignore[arg-type]


def _outcome(trigger: Trigger) -> RunOutcome:
    return RunOutcome(
        trigger.trigger_id[:12],
        trigger.domain,
        "operator",
        "skipped",
        "test",
        "2025-01-01T00:00:00Z",
    )


def test_a_trigger_survives_a_crash_until_its_outcome_is_stored(
    settings: Settings, redis_client: redis.Redis
) -> None:
    queue = _queue(settings, redis_client)
    sent = _trigger()
    queue.send(sent)
    (got,) = queue.read_new("a", block_ms=100)
    assert (got.trigger_id, got.domain) == (sent.trigger_id, "emails")
    # Instance a dies here. Nobody else sees the entry as new...
    assert queue.read_new("b", block_ms=100) == []
    # ...but a restarted a finds it pending, and b takes it over once it is idle.
    assert [t.trigger_id for t in queue.read_own_pending("a")] == [sent.trigger_id]
    (claimed,) = queue.claim_idle("b", min_idle_s=0)
    assert claimed.trigger_id == sent.trigger_id
    assert queue.outcome(sent.trigger_id) is None
    queue.finish(claimed, _outcome(claimed))
    stored = queue.outcome(sent.trigger_id)
    assert stored is not None
    assert stored.outcome == "skipped"
    assert redis_client.xpending(queue.stream, GROUP)["pending"] == 0
    assert queue.done_already(claimed)


def test_an_entry_being_worked_on_is_kept_from_others(
    settings: Settings, redis_client: redis.Redis
) -> None:
    queue = _queue(settings, redis_client)
    queue.send(_trigger())
    (got,) = queue.read_new("a", block_ms=100)
    queue.keep_fresh("a", [got.entry_id])
    assert queue.claim_idle("b", min_idle_s=30) == []


def test_a_malformed_entry_is_dropped(settings: Settings, redis_client: redis.Redis) -> None:
    queue = _queue(settings, redis_client)
    redis_client.xadd(queue.stream, {"domain": "sms", "trigger_id": "x"})
    good = _trigger("transactions")
    queue.send(good)
    triggers = queue.read_new("a", block_ms=100)
    assert [t.trigger_id for t in triggers] == [good.trigger_id]
    assert redis_client.xlen(queue.stream) == 1


def test_an_entry_whose_seed_is_no_seed_is_dropped_not_raised(
    settings: Settings, redis_client: redis.Redis
) -> None:
    queue = _queue(settings, redis_client)
    # "²" is a digit to str.isdigit() that int() refuses; the others are out of range.
    for seed in ("²", "--5", "-1", str(2**32), "seven"):
        redis_client.xadd(
            queue.stream, {"domain": "emails", "trigger_id": new_trigger_id(), "seed": seed}
        )
    good = Trigger(new_trigger_id(), "emails", False, "test", "2025-01-01T00:00:00Z", seed=7)
    queue.send(good)
    triggers = queue.read_new("a", block_ms=100)
    assert [(t.trigger_id, t.seed) for t in triggers] == [(good.trigger_id, 7)]
    assert redis_client.xlen(queue.stream) == 1


def test_the_queue_reads_redis_py_unified_responses_too(
    settings: Settings, redis_client: redis.Redis
) -> None:
    # redis-py 8 answers XREADGROUP as {stream: entries} when legacy_responses is off.
    with redis.Redis.from_url(settings.redis.url, legacy_responses=False) as unified:
        queue = _queue(settings, unified)
        sent = _trigger()
        queue.send(sent)
        (got,) = queue.read_new("a", block_ms=100)
        assert got.trigger_id == sent.trigger_id
        assert [t.trigger_id for t in queue.read_own_pending("a")] == [sent.trigger_id]
        queue.finish(got, _outcome(got))
        assert queue.read_new("a", block_ms=100) == []
    assert redis_client.xpending(queue.stream, GROUP)["pending"] == 0


def test_a_monitor_trigger_published_twice_is_read_once(
    settings: Settings, redis_client: redis.Redis
) -> None:
    queue = _queue(settings, redis_client)
    trigger = Trigger("monitor-emails-floor-42", "emails", False, "monitor", "2025-01-01T00:00:00Z")
    for _ in range(2):
        publish_once(redis_client, queue.keys, trigger, dedupe_s=60)
    assert [t.trigger_id for t in queue.read_new("a", block_ms=100)] == [trigger.trigger_id]
    assert queue.read_new("a", block_ms=100) == []
