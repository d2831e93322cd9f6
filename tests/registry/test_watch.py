"""Watching the champion: notices from other processes, catch-up after a disconnect."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from inferloop.local.process import free_port
from inferloop.local.redis import LocalRedis
from inferloop.registry import ModelVersion, Registry
from inferloop.settings import RedisSettings, Settings
from tests.registry.factories import Register, RegistryFactory, Trained, train_transactions


@pytest.fixture
def two(register: Register, tx_model: Trained) -> list[ModelVersion]:
    """Two versions of ``transactions`` with different artifacts."""
    return [register(tx_model), register(train_transactions(seed=3))]


def _promote(settings: Settings, version: int, expected: int | None) -> None:
    with Registry.from_settings(settings) as registry:
        registry.promote("transactions", version, expected_current=expected, reason="elsewhere")


def _subscribers(client: redis.Redis, channel: str) -> int:
    return int(dict(client.pubsub_numsub(channel))[channel.encode()])


def test_a_watcher_sees_a_promotion_made_by_another_process(
    registry: Registry, registry_settings: Settings, two: list[ModelVersion]
) -> None:
    with registry.watch("transactions") as watcher:
        assert (watcher.current, watcher.wait(timeout_s=0.5)) == (None, None)
        process = multiprocessing.get_context("spawn").Process(
            target=_promote, args=(registry_settings, 1, None)
        )
        process.start()
        process.join(timeout=120)
        assert process.exitcode == 0
        assert watcher.wait(timeout_s=10) == two[0].target
        assert watcher.current == two[0].target
        assert watcher.wait(timeout_s=0.3) is None


def test_a_watcher_disconnected_during_a_promotion_sees_it_on_reconnect(
    registry: Registry, redis_client: redis.Redis, two: list[ModelVersion]
) -> None:
    registry.promote("transactions", 1, expected_current=None, reason="first")
    channel = registry.keys.notices("transactions")
    with registry.watch("transactions") as watcher:
        assert watcher.current == two[0].target
        watcher.wait(timeout_s=0.5)
        assert _subscribers(redis_client, channel) == 1
        assert redis_client.client_kill_filter(_type="pubsub") >= 1
        assert _subscribers(redis_client, channel) == 0

        # Published to nobody: only the catch-up on reconnect can tell the watcher.
        registry.promote("transactions", 2, expected_current=1, reason="while away")
        assert watcher.wait(timeout_s=10) == two[1].target
        assert _subscribers(redis_client, channel) == 1


def test_a_move_without_a_notice_is_found_by_the_periodic_check(
    registry: Registry, redis_client: redis.Redis, two: list[ModelVersion]
) -> None:
    with registry.watch("transactions", check_interval_s=0.2) as watcher:
        watcher.wait(timeout_s=0.3)
        redis_client.hset(registry.keys.aliases("transactions"), "champion", two[1].target.encode())
        assert watcher.wait(timeout_s=5) == two[1].target


def test_a_watcher_given_a_stale_baseline_reports_the_current_target(
    registry: Registry, two: list[ModelVersion]
) -> None:
    registry.promote("transactions", 2, expected_current=None, reason="x")
    with registry.watch("transactions", current=two[0].target) as watcher:
        assert watcher.wait(timeout_s=5) == two[1].target


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    """A Redis server of this test's own, which it may stop and start."""
    server = LocalRedis(home=tmp_path / "redis", port=free_port())
    server.start(timeout_s=30)
    yield server
    server.stop()


def test_a_watcher_rides_out_a_redis_outage_and_then_catches_up(
    own_redis: LocalRedis,
    registry_settings: Settings,
    registry_factory: RegistryFactory,
    register: Register,
    tx_model: Trained,
) -> None:
    settings = registry_settings.model_copy(
        update={"redis": RedisSettings(url=own_redis.url, connect_timeout_s=0.5)}
    )
    registry = registry_factory(settings)
    first = register(tx_model, into=registry)
    second = register(train_transactions(seed=4), into=registry)
    registry.promote("transactions", 1, expected_current=None, reason="first")
    with registry.watch("transactions") as watcher:
        assert watcher.current == first.target
        own_redis.stop()
        started = time.monotonic()
        assert watcher.wait(timeout_s=1.5) is None
        assert time.monotonic() - started < 10
        assert (watcher.healthy, watcher.last_error is not None) == (False, True)

        own_redis.start(timeout_s=30)
        registry.promote("transactions", 2, expected_current=1, reason="after the outage")
        assert watcher.wait(timeout_s=10) == second.target
        assert (watcher.healthy, watcher.disconnects) == (True, 1)
