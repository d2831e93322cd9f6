"""A monitor killed with SIGKILL mid-stream and started again neither loses a label nor
counts one twice: its state and offsets move together (real process, Kafka, Redis)."""

from __future__ import annotations

import signal
from collections.abc import Callable

import redis

from inferloop.keys import Keys
from inferloop.monitor.state import StateStore
from inferloop.settings import Settings
from inferloop.topics import DomainTopics
from tests.monitor.conftest import MonitorProcess, positives, publish_labels, with_monitor
from tests.worker.conftest import Champion, wait_for
from tests.worker.factories import Fitted

N = 20_000


def counted(client: redis.Redis, settings: Settings) -> int:
    raw = client.hget(Keys(settings.redis.key_prefix).monitor_counts("transactions"), "labels")
    return int(raw or 0)


def test_a_monitor_killed_and_restarted_neither_loses_nor_double_counts(
    *,
    msettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
    redis_client: redis.Redis,
    monitor_process: Callable[..., MonitorProcess],
) -> None:
    champion(model_v1)
    ids = list(range(N))
    publish_labels(msettings, topics.labels, ids)
    # Small batches, so that the kill lands mid-stream.
    settings = with_monitor(msettings, max_batch_size=100)

    first = monitor_process(settings)
    try:
        wait_for(lambda: counted(redis_client, settings) >= 2_000, 120, "a part of the labels")
    finally:
        print(first.log())
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    at_kill = counted(redis_client, settings)
    assert 0 < at_kill < N

    second = monitor_process(settings, "--idle-timeout-s", "3")
    assert second.process.wait(180) == 0, second.log()

    keys = Keys(settings.redis.key_prefix)
    counts = redis_client.hgetall(keys.monitor_counts("transactions"))
    assert int(counts[b"labels"]) == N
    assert int(counts.get(b"duplicates", 0)) == 0
    stored = StateStore(redis_client, keys, "transactions", lease_s=1).load()
    assert len(stored.entries) == N
    assert len({e.id_hash for e in stored.entries}) == N
    assert sum(e.y for e in stored.entries) == positives(ids)
    assert sum(o for f, o in stored.offsets.items() if f.startswith("labels:")) == N
