"""Fixtures shared by every test.

Integration tests run against a real Apache Kafka broker and a real Redis server that
this test session starts on ports of its own, in a temporary state directory, and
stops at the end; a user's services on the default ports are never touched. Each test
gets its own topic prefix (so its own topics and consumer groups) and its own Redis
key prefix, and both are cleaned up afterwards.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from inferloop.local.kafka import KafkaJars, LocalKafka
from inferloop.local.process import free_port
from inferloop.local.redis import LocalRedis
from inferloop.local.services import LocalServices
from inferloop.settings import (
    KafkaSettings,
    LocalServicesSettings,
    RedisSettings,
    Settings,
    TopicSettings,
)
from tests.helpers import delete_topics_with_prefix

_SERVICES_LINE: list[str] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    # The console's browser tests write each page's screenshot there (tests/console).
    parser.addoption("--screenshots", default=None, help="Directory for the console's screenshots.")


def pytest_configure(config: pytest.Config) -> None:
    # Tests build their settings explicitly; the developer's environment must not leak
    # in, except where the data sets are.
    for name in [n for n in os.environ if n.startswith("INFERLOOP_")]:
        if name != "INFERLOOP_DATA_DIR":
            del os.environ[name]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _SERVICES_LINE:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def local_services(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[LocalServices]:
    """Kafka and Redis for this test session, on free ports, stopped at the end."""
    state = tmp_path_factory.mktemp("services")
    defaults = LocalServicesSettings()
    services = LocalServices(
        kafka=LocalKafka(
            jars=KafkaJars(defaults.kafka_version, defaults.cache_dir),
            home=state / "kafka",
            port=free_port(),
            controller_port=free_port(),
        ),
        redis=LocalRedis(home=state / "redis", port=free_port()),
        start_timeout_s=120.0,
    )
    try:
        states = services.up()
        line = "integration services: " + ", ".join(
            f"{'Apache Kafka' if s.name == 'kafka' else 'Redis'} {s.version} at {s.address}"
            for s in states
        )
        _SERVICES_LINE.append(line)
        reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"\n{line}")
        yield services
    finally:
        services.down()


@pytest.fixture(scope="session")
def service_settings(local_services: LocalServices) -> Settings:
    """Settings pointing at the session's services, with no per-test isolation."""
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=local_services.kafka.address, connect_timeout_s=10),
        redis=RedisSettings(url=local_services.redis.url),
    )


@pytest.fixture
def settings(
    service_settings: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Settings]:
    """Settings isolated for one test: its own topic prefix and Redis key prefix."""
    tag = uuid.uuid4().hex[:10]
    isolated = service_settings.model_copy(
        update={
            "topics": TopicSettings(prefix=f"t{tag}-", partitions=4),
            "redis": service_settings.redis.model_copy(update={"key_prefix": f"test-{tag}"}),
            "retrain": service_settings.retrain.model_copy(
                update={"reports_dir": tmp_path / "reports", "snapshot_dir": tmp_path / "snap"}
            ),
        }
    )
    yield isolated
    delete_topics_with_prefix(isolated, isolated.topics.prefix)
    with redis.Redis.from_url(isolated.redis.url) as client:
        keys = list(client.scan_iter(match=f"{isolated.redis.key_prefix}:*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture
def kafka_shortcuts(request: pytest.FixtureRequest) -> str | None:
    """The shortcuts into kafka-python's internals the test's workers use (as
    ``INFERLOOP_WORKER__KAFKA_SHORTCUTS``; tests/worker's ``wsettings``): the test's
    parameter when it has one (tests marked shortcuts_off_too), else
    ``$TEST_KAFKA_SHORTCUTS``, else the default (all)."""
    chosen: str | None = getattr(request, "param", None)
    return chosen if chosen is not None else os.environ.get("TEST_KAFKA_SHORTCUTS")


@pytest.fixture
def redis_client(settings: Settings) -> Iterator[redis.Redis]:
    """A client of the session's Redis."""
    client = redis.Redis.from_url(settings.redis.url)
    yield client
    client.close()


@pytest.fixture
def topic_factory(settings: Settings) -> Callable[..., str]:
    """Make a topic under the test's prefix: ``topic_factory("name", partitions=4)``."""
    from inferloop.connections import admin_client

    def make(
        name: str | None = None, partitions: int = 4, config: dict[str, str] | None = None
    ) -> str:
        topic = settings.topics.prefix + (name or uuid.uuid4().hex[:8])
        with admin_client(settings.kafka) as admin:
            admin.create_topics(
                {
                    topic: {
                        "num_partitions": partitions,
                        "replication_factor": 1,
                        "configs": config or {},
                    }
                }
            )
            admin.wait_for_topics([topic], timeout_ms=30_000)
        return topic

    return make


@pytest.fixture
def own_kafka(tmp_path: Path, local_services: LocalServices) -> Iterator[LocalKafka]:
    """A broker of the test's own, to stop, freeze (SIGSTOP) and start again, so the
    session's broker and the tests beside it are not disturbed; thawed and stopped at
    the end."""
    kafka = LocalKafka(
        jars=local_services.kafka.jars,
        home=tmp_path / "kafka",
        port=free_port(),
        controller_port=free_port(),
    )
    kafka.start(timeout_s=120)
    try:
        yield kafka
    finally:
        pid = kafka.process.pid()
        if pid is not None:
            os.kill(pid, signal.SIGCONT)  # a frozen broker could not stop
        kafka.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    """A Redis server of the test's own, to stop and start again; stopped at the end."""
    server = LocalRedis(home=tmp_path / "redis", port=free_port())
    server.start(timeout_s=30)
    try:
        yield server
    finally:
        server.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test that needs the real services is an integration test, whatever its folder.
    for item in items:
        if "local_services" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
    # The tests marked slow run first (in their order), so that with xdist (--dist loadfile)
    # the longest files start at once rather than last, when the other worker has nothing
    # left to take; each xdist worker sorts the same collection the same way.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
