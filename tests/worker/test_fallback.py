"""A worker that starts while the champion fails verification serves the most recent
earlier champion that verifies, says so (log, gauge, ``/healthz``), and switches to the
champion once one that verifies is promoted; with none that verifies it consumes nothing."""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
import redis

from inferloop.registry import ModelVersion, Registry
from inferloop.settings import Settings
from inferloop.topics import DomainTopics
from inferloop.worker.loop import Worker
from tests.worker.conftest import DOMAIN, Champion, WorkerThread, wait_for
from tests.worker.factories import Fitted, predictions, publish_events, train


def tamper(registry: Registry, version: ModelVersion) -> None:
    """One bit of the version's stored artifact flipped, behind the registry's back."""
    client: redis.Redis = registry.client
    key = registry.keys.artifact(DOMAIN, version.version)
    stored: Any = client.get(key)
    data = bytearray(stored)
    data[len(data) // 2] ^= 0x01
    client.set(key, bytes(data))


def healthz(worker: Worker) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of the worker's ``/healthz``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.http_port}/healthz", timeout=5) as r:
        return r.status, json.loads(r.read())


def fallback_gauge(worker: Worker) -> float | None:
    return worker.metrics.registry.get_sample_value(
        "inferloop_worker_model_fallback", {"domain": DOMAIN}
    )


def test_a_worker_started_under_a_tampered_champion_serves_the_previous_one_losing_nothing(
    *,
    wsettings: Settings,
    topics: DomainTopics,
    registry: Registry,
    champion: Champion,
    model_v1: Fitted,
    model_v2: Fitted,
    worker_thread: Callable[..., WorkerThread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    v1 = champion(model_v1)
    v2 = champion(model_v2)
    tamper(registry, v2)

    with caplog.at_level(logging.ERROR, logger="inferloop.worker.model"):
        running = worker_thread(wsettings)
        publish_events(wsettings, topics.events, range(300))
        during = predictions(wsettings, topics.predictions, expect=300)
    assert {p.model.version for p in during} == {v1.version}
    assert f"serving v{v1.version}" in caplog.text
    assert fallback_gauge(running.worker) == 1
    status, body = healthz(running.worker)
    assert (status, body["degraded"], body["model_version"]) == (200, True, v1.version)
    assert f"champion v{v2.version}" in body["degraded_reason"]
    assert "DigestMismatchError" in body["degraded_reason"]

    v3 = champion(train(seed=3, iterations=20))
    wait_for(lambda: running.worker.health.model_version == v3.version, 30, "the swap to v3")
    publish_events(wsettings, topics.events, range(300, 600))
    out = predictions(wsettings, topics.predictions, expect=600)
    running.stop()

    assert sorted(p.event_id for p in out) == sorted(f"tx-{i}" for i in range(600))
    late = {p.event_id: p.model.version for p in out}
    assert {late[f"tx-{i}"] for i in range(300, 600)} == {v3.version}
    assert fallback_gauge(running.worker) == 0
    assert running.worker.health.as_dict()["degraded"] is False


def test_with_no_version_that_verifies_a_worker_consumes_nothing_and_says_why(
    *,
    wsettings: Settings,
    topics: DomainTopics,
    registry: Registry,
    champion: Champion,
    model_v1: Fitted,
    model_v2: Fitted,
    worker_thread: Callable[..., WorkerThread],
) -> None:
    v1 = champion(model_v1)
    tamper(registry, v1)
    running = worker_thread(wsettings)
    publish_events(wsettings, topics.events, range(100))

    def reason() -> str:
        return running.worker.health.degraded_reason or ""

    wait_for(lambda: "no earlier version verifies" in reason(), 30, "the worker to say why")
    time.sleep(2 * wsettings.worker.model_check_interval_s)
    assert predictions(wsettings, topics.predictions, timeout_s=1.0) == []
    assert running.worker.health.model_version is None
    assert f"champion v{v1.version}" in reason()

    v2 = champion(model_v2)
    out = predictions(wsettings, topics.predictions, expect=100)
    running.stop()
    assert {p.model.version for p in out} == {v2.version}
    assert sorted(p.event_id for p in out) == sorted(f"tx-{i}" for i in range(100))
    assert running.worker.health.degraded_reason is None
    assert fallback_gauge(running.worker) == 0
