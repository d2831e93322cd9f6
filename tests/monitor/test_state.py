"""The monitor's state on the real Redis: a batch retried after a lost answer is stored
once, and another monitor's lease, or its writes while the lease was free, stop a
writer."""

from __future__ import annotations

from collections import Counter

import pytest
import redis

from inferloop.keys import Keys
from inferloop.monitor.errors import LeaseLostError
from inferloop.monitor.state import Changes, StateStore
from inferloop.monitor.window import Entry
from inferloop.settings import Settings


def batch() -> Changes:
    return Changes(
        offsets={"labels:0": 10, "labels:1": 4},
        appended=[Entry(1, 1, 0, 5.0, 1.0, {1: 0.75}), Entry(2, 0, 0, 5.0, 1.0, {1: 0.25})],
        counts=Counter({"labels": 2}),
    )


def test_a_batch_committed_twice_is_stored_once(
    settings: Settings, redis_client: redis.Redis
) -> None:
    store = StateStore(redis_client, Keys(settings.redis.key_prefix), "transactions", 5.0)
    store.acquire()
    store.commit(batch())
    # As if EXEC's answer had been lost and the batch sent again.
    store.commit(batch())
    stored = store.load()
    assert len(stored.entries) == 2
    assert stored.counts == {"labels": 2}
    assert stored.offsets == {"labels:0": 10, "labels:1": 4}


def test_a_monitor_whose_lease_another_took_writes_nothing(
    settings: Settings, redis_client: redis.Redis
) -> None:
    keys = Keys(settings.redis.key_prefix)
    first = StateStore(redis_client, keys, "transactions", 5.0)
    first.acquire()
    redis_client.delete(keys.monitor_lease("transactions"))
    second = StateStore(redis_client, keys, "transactions", 5.0)
    second.acquire()
    with pytest.raises(LeaseLostError):
        first.commit(batch())
    assert second.load().entries == []


def test_an_expired_lease_is_taken_back_only_if_nobody_wrote_meanwhile(
    settings: Settings, redis_client: redis.Redis
) -> None:
    keys = Keys(settings.redis.key_prefix)
    lease = keys.monitor_lease("transactions")
    first = StateStore(redis_client, keys, "transactions", 5.0)
    first.acquire()
    first.load()
    first.commit(batch())
    redis_client.delete(lease)  # expired during a long stall; nobody took it
    first.commit(Changes(offsets={"labels:0": 11}, counts=Counter({"labels": 1})))
    assert first.holder() == first.token

    redis_client.delete(lease)  # expired again: another monitor takes over meanwhile,
    second = StateStore(redis_client, keys, "transactions", 5.0)
    second.acquire()
    assert second.load().counts == {"labels": 3}
    second.commit(Changes(offsets={"labels:0": 12}, counts=Counter({"labels": 1})))
    second.release()  # ... stores its batch and stops
    # The first wakes up: its window and counters are stale, it must not write them.
    with pytest.raises(LeaseLostError):
        first.commit(Changes(offsets={"labels:0": 13}, counts=Counter({"labels": 1})))
    stored = second.load()
    assert stored.counts == {"labels": 4}
    assert stored.offsets == {"labels:0": 12, "labels:1": 4}
