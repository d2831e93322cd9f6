"""``inferloop services up|down|status|reset``: real Kafka and Redis without Docker."""

from __future__ import annotations

import time
from dataclasses import dataclass

from inferloop.local.kafka import KafkaJars, LocalKafka
from inferloop.local.redis import LocalRedis, find_redis_server
from inferloop.settings import LocalServicesSettings


@dataclass(frozen=True)
class ServiceState:
    """What one service is doing."""

    name: str
    running: bool
    address: str
    version: str | None
    pid: int | None
    started_now: bool = False
    start_s: float | None = None
    home: str = ""


@dataclass(frozen=True)
class LocalServices:
    """The Kafka broker and Redis server of one state directory."""

    kafka: LocalKafka
    redis: LocalRedis
    start_timeout_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: LocalServicesSettings) -> LocalServices:
        """The services the settings describe."""
        jars = KafkaJars(settings.kafka_version, settings.cache_dir)
        kafka = LocalKafka(
            jars=jars,
            home=settings.state_dir / "kafka",
            port=settings.kafka_port,
            controller_port=settings.kafka_controller_port,
            heap=settings.kafka_heap,
        )
        redis = LocalRedis(home=settings.state_dir / "redis", port=settings.redis_port)
        return cls(kafka=kafka, redis=redis, start_timeout_s=settings.start_timeout_s)

    def install(self) -> dict[str, str]:
        """Fetch what starting needs (Kafka's jars, redis-server) without starting."""
        return {
            "kafka": str(self.kafka.jars.ensure()),
            "redis": find_redis_server(install=self.redis.install),
        }

    def up(self) -> list[ServiceState]:
        """Start whatever is not running (Redis first: it is quicker to fail)."""
        started = time.monotonic()
        redis_new = self.redis.start(self.start_timeout_s)
        redis_s = time.monotonic() - started
        started = time.monotonic()
        kafka_new = self.kafka.start(self.start_timeout_s)
        kafka_s = time.monotonic() - started
        return [
            self._redis_state(started_now=redis_new, start_s=redis_s if redis_new else None),
            self._kafka_state(started_now=kafka_new, start_s=kafka_s if kafka_new else None),
        ]

    def down(self) -> list[str]:
        """Stop what this state directory started (Kafka first); the names stopped."""
        stopped = []
        if self.kafka.stop():
            stopped.append("kafka")
        if self.redis.stop():
            stopped.append("redis")
        return stopped

    def status(self) -> list[ServiceState]:
        """What runs where."""
        return [self._redis_state(), self._kafka_state()]

    def reset(self) -> None:
        """Stop both and wipe their data."""
        self.down()
        self.kafka.reset()
        self.redis.reset()

    def _kafka_state(self, started_now: bool = False, start_s: float | None = None) -> ServiceState:
        pid = self.kafka.process.pid()
        return ServiceState(
            name="kafka",
            running=pid is not None,
            address=self.kafka.address,
            version=self.kafka.version() if pid else None,
            pid=pid,
            home=str(self.kafka.home),
            started_now=started_now,
            start_s=start_s,
        )

    def _redis_state(self, started_now: bool = False, start_s: float | None = None) -> ServiceState:
        pid = self.redis.process.pid()
        return ServiceState(
            name="redis",
            running=pid is not None,
            address=f"127.0.0.1:{self.redis.port}",
            version=self.redis.version() if pid else None,
            pid=pid,
            home=str(self.redis.home),
            started_now=started_now,
            start_s=start_s,
        )
