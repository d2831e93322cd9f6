"""The real Redis: a round trip, and a clear error naming the address when it is down."""

from __future__ import annotations

import pytest
import redis

from inferloop.connections import check_redis, make_redis
from inferloop.errors import RedisUnavailableError
from inferloop.keys import Keys
from inferloop.local.process import free_port
from inferloop.settings import RedisSettings, Settings


def test_round_trip_under_the_test_prefix(settings: Settings) -> None:
    client = check_redis(settings.redis)
    key = Keys(settings.redis.key_prefix).version_counter("roundtrip")
    try:
        assert client.incr(key) == 1
        assert client.incr(key) == 2
        client.set(key + ":blob", bytes(range(256)))
        assert client.get(key + ":blob") == bytes(range(256))
        assert key.startswith(f"{settings.redis.key_prefix}:")
    finally:
        client.close()


def test_persistence_is_append_only_and_never_evicts(settings: Settings) -> None:
    client = make_redis(settings.redis, decode_responses=True)
    try:
        config = client.config_get("appendonly") | client.config_get("appendfsync")
        config |= client.config_get("maxmemory-policy")
    finally:
        client.close()
    assert config == {
        "appendonly": "yes",
        "appendfsync": "always",
        "maxmemory-policy": "noeviction",
    }


def test_unreachable_redis_fails_fast_naming_the_address() -> None:
    port = free_port()
    with pytest.raises(RedisUnavailableError, match=f"127.0.0.1:{port}"):
        check_redis(RedisSettings(url=f"redis://127.0.0.1:{port}/0", connect_timeout_s=1))


def test_url_credentials_do_not_leak_into_the_address() -> None:
    with pytest.raises(RedisUnavailableError) as info:
        check_redis(RedisSettings(url=f"redis://user:secret@127.0.0.1:{free_port()}/0"))
    assert "secret" not in str(info.value)
    assert isinstance(info.value.__cause__, redis.ConnectionError)
