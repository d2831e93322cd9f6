"""``inferloop services``: idempotent start, clean stop, clear failures."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from inferloop.local.kafka import KafkaJars, LocalKafka
from inferloop.local.process import LocalServiceError, alive, free_port
from inferloop.local.redis import LocalRedis
from inferloop.local.services import LocalServices
from inferloop.settings import LocalServicesSettings


@pytest.fixture
def own_services(tmp_path: Path, local_services: LocalServices) -> Iterator[LocalServices]:
    """A second pair of services in a fresh state directory (the session's stay up)."""
    defaults = LocalServicesSettings()
    services = LocalServices(
        kafka=LocalKafka(
            jars=KafkaJars(defaults.kafka_version, defaults.cache_dir),
            home=tmp_path / "kafka",
            port=free_port(),
            controller_port=free_port(),
        ),
        redis=LocalRedis(home=tmp_path / "redis", port=free_port()),
        start_timeout_s=120,
    )
    yield services
    services.down()


def test_up_twice_is_a_no_op_and_down_leaves_no_process(own_services: LocalServices) -> None:
    first = own_services.up()
    pids = {s.name: s.pid for s in first}
    second = own_services.up()

    assert [s.started_now for s in first] == [True, True]
    assert [s.started_now for s in second] == [False, False]
    assert {s.name: s.pid for s in second} == pids
    assert {s.name: s.version for s in second}["kafka"] == LocalServicesSettings().kafka_version
    # Started as Kafka's own script starts it: G1, its pauses logged beside the broker's log.
    assert "Using G1" in own_services.kafka.gc_log_path.read_text()

    assert sorted(own_services.down()) == ["kafka", "redis"]
    assert all(pid is not None and not alive(pid) for pid in pids.values())
    assert [s.running for s in own_services.status()] == [False, False]
    assert own_services.down() == []


def test_kafka_data_survives_down_and_up(own_services: LocalServices) -> None:
    own_services.up()
    meta = own_services.kafka.data_dir / "meta.properties"
    cluster_before = meta.read_text()
    own_services.down()
    own_services.up()
    assert meta.read_text() == cluster_before
    own_services.reset()
    assert not own_services.kafka.data_dir.exists()


def test_port_taken_by_another_program_is_named(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        redis = LocalRedis(home=tmp_path / "redis", port=port)
        with pytest.raises(LocalServiceError, match=f"port {port} on 127.0.0.1 is taken"):
            redis.start(timeout_s=10)


def test_cli_status_reports_stopped_services(tmp_path: Path) -> None:
    env = {
        "INFERLOOP_SERVICES__STATE_DIR": str(tmp_path),
        "INFERLOOP_SERVICES__REDIS_PORT": str(free_port()),
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(
        [sys.executable, "-m", "inferloop", "services", "status", "--json"],
        capture_output=True, text=True, env=env, check=True,
    ).stdout  # fmt: skip
    assert '"running": false' in out
    assert "kafka" in out
    assert "redis" in out
