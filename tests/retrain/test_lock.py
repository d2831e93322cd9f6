"""The lease lock: one holder at a time, named to the others, never renewed once lost."""

from __future__ import annotations

import pytest
import redis

from inferloop.keys import Keys
from inferloop.retrain.errors import LockHeldError
from inferloop.retrain.lock import LeaseLock, parse_token
from inferloop.settings import Settings


def _lock(settings: Settings, client: redis.Redis, lease_s: float = 30.0) -> LeaseLock:
    return LeaseLock(client, Keys(settings.redis.key_prefix).retrain_lock("emails"), lease_s)


def test_a_second_holder_is_told_who_holds_the_lease(
    settings: Settings, redis_client: redis.Redis
) -> None:
    lock = _lock(settings, redis_client)
    with lock.acquire("host-a:1:cli:run1"):
        with pytest.raises(LockHeldError, match="held by host-a:1:cli:run1, since") as caught:
            lock.acquire("host-b:2:cli:run2")
        assert caught.value.holder == "host-a:1:cli:run1"
    # Released: the next one gets it.
    with lock.acquire("host-b:2:cli:run2") as lease:
        assert lease.held()


def test_a_lease_taken_over_is_not_renewed_or_released(
    settings: Settings, redis_client: redis.Redis
) -> None:
    lock = _lock(settings, redis_client)
    lease = lock.acquire("slow")
    # The lease ran out while the holder stalled, and another run took it.
    redis_client.delete(lock.key)
    other = lock.acquire("fast")
    assert lease.renew() is False
    assert lease.lost
    assert lease.release() is False
    assert other.held()
    holder = lock.holder()
    assert holder is not None
    assert holder.holder == "fast"
    other.release()
    assert lock.holder() is None


def test_renewal_keeps_a_short_lease_alive(settings: Settings, redis_client: redis.Redis) -> None:
    lock = _lock(settings, redis_client, lease_s=0.6)
    with lock.acquire("renewing") as lease:
        # Three lease lengths later the renewer has kept it.
        for _ in range(3):
            assert lease.renew()
            ttl_ms = int(redis_client.pttl(lock.key))
            assert 0 < ttl_ms <= 600
        assert not lease.lost


def test_any_token_text_is_shown_as_it_is() -> None:
    assert parse_token("someone else").holder == "someone else"
    info = parse_token("h:1:cli:r|1700000000.000|abc", ttl_s=12)
    assert info.describe() == "h:1:cli:r, since 2023-11-14T22:13:20Z, lease ends in 12 s"
