"""The worker as the benchmarks run it: real worker processes on a real broker.

:class:`WorkerGroup` starts ``N`` worker processes (slots ``0..N-1``, one consumer group,
as ``inferloop worker run --processes N`` does) and knows when they hold every
partition. :func:`measure_worker` measures the full-speed rate:

1. the events are written to the input topic inside one Kafka transaction that stays
   open, so the workers (``read_committed``) see none of them yet;
2. the workers start, load the champion and join the group; once every partition is
   assigned (their health endpoints say so), the transaction commits and every event
   becomes visible at once, so two processes start together, with no rebalance in
   the measured part;
3. the rate is the events over the time from the first record any worker polled to
   the moment the group's committed offsets cover every event (polled every 20 ms):
   first record to last commit, as the baseline loops are measured.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError

from bench.data import keys_of
from bench.env import Child, Env, health, wait_until
from inferloop.connections import admin_client, make_producer
from inferloop.local.process import free_port
from inferloop.settings import Domain, Settings
from inferloop.topics import consumer_group, create_domain_topics, for_settings

log = logging.getLogger(__name__)

COMMIT_POLL_S = 0.02
READY_TIMEOUT_S = 120.0


@dataclass
class WorkerGroup:
    """``processes`` worker children of one domain in one consumer group."""

    env: Env
    settings: Settings
    domain: Domain
    children: list[Child]
    ports: list[int]

    @classmethod
    def start(
        cls,
        env: Env,
        settings: Settings,
        domain: Domain,
        processes: int,
        *,
        name: str,
        profile: Path | None = None,
        idle_timeout_s: float | None = None,
    ) -> WorkerGroup:
        """Start the children (they wait for the champion, then join the group)."""
        ports = [free_port() for _ in range(processes)]
        children = [
            env.spawn(
                "worker",
                {
                    "settings": settings.model_dump(mode="json"),
                    "domain": domain,
                    "slot": slot,
                    "metrics_port": port,
                    "idle_timeout_s": idle_timeout_s,
                    "profile": str(profile) if profile and slot == 0 else None,
                },
                f"{name}-w{slot}",
            )
            for slot, port in enumerate(ports)
        ]
        return cls(env, settings, domain, children, ports)

    def health(self, slot: int = 0) -> dict[str, Any] | None:
        """Child ``slot``'s health answer (None while it does not answer)."""
        return health(self.ports[slot])

    def holds_all_partitions(self) -> bool:
        """Every child runs a model and holds partitions, and together they hold all."""
        answers = [self.health(i) for i in range(len(self.children))]
        if any(a is None or a.get("state") != "running" for a in answers):
            self._check_alive()
            return False
        held = [int(a["partitions"]) for a in answers if a is not None]
        return all(held) and sum(held) == self.settings.topics.partitions

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> float:
        """Wait until the group holds every partition (stable for a moment)."""
        waited = wait_until(self.holds_all_partitions, timeout_s, "the workers to join", 0.1)
        time.sleep(0.3)
        return waited + 0.3 if self.holds_all_partitions() else self.wait_ready(timeout_s)

    def _check_alive(self) -> None:
        for child in self.children:
            if not child.alive():
                child.wait(1)  # raises with the child's log

    def stop(self, timeout_s: float = 90.0) -> list[dict[str, Any]]:
        """SIGTERM every child; their results."""
        for child in self.children:
            child.terminate()
        return [child.wait(timeout_s) for child in self.children]


class HiddenPrefill:
    """Events written inside an open transaction: invisible to ``read_committed``
    readers until :meth:`reveal`."""

    def __init__(self, settings: Settings, topic: str, values: list[bytes]) -> None:
        self._producer = make_producer(
            settings.kafka,
            transactional_id=f"{settings.topics.prefix}prefill",
            transaction_timeout_ms=600_000,
            linger_ms=20,
            batch_size=512 * 1024,
            max_request_size=16 * 1024 * 1024,
        )
        self._producer.init_transactions()
        self._producer.begin_transaction()
        for key, value in zip(keys_of(values), values, strict=True):
            self._producer.send(topic, key=key, value=value)
        self._producer.flush(timeout=300)

    def reveal(self) -> float:
        """Commit the transaction; the wall time it was committed at."""
        self._producer.commit_transaction()
        revealed = time.time()
        self._producer.close(timeout=10)
        return revealed


def committed_total(admin: Any, group: str, partitions: list[TopicPartition]) -> int:
    """The sum of ``group``'s committed offsets over ``partitions`` (0 where none)."""
    try:
        answer = admin.list_group_offsets({group: partitions}).get(group, {})
    except KafkaError:
        return 0
    return sum(max(meta.offset, 0) for meta in answer.values())


def wait_committed(
    settings: Settings, group: str, topic: str, total: int, timeout_s: float
) -> float:
    """Poll until ``group`` has committed ``total`` offsets of ``topic``; the wall time."""
    partitions = [TopicPartition(topic, p) for p in range(settings.topics.partitions)]
    deadline = time.monotonic() + timeout_s
    with admin_client(settings.kafka) as admin:
        while time.monotonic() < deadline:
            if committed_total(admin, group, partitions) >= total:
                return time.time()
            time.sleep(COMMIT_POLL_S)
    raise TimeoutError(f"{group} did not commit {total} offsets of {topic} in {timeout_s:.0f} s")


@dataclass(frozen=True)
class WorkerRate:
    """One full-speed worker measurement."""

    domain: str
    delivery: str
    processes: int
    events: int
    seconds: float
    predicted: int
    dead_lettered: int
    peak_rss_mb: float
    ready_s: float

    @property
    def rate(self) -> float:
        """Events per second, first record to last commit."""
        return self.events / self.seconds if self.seconds > 0 else 0.0


def measure_worker(
    env: Env,
    settings: Settings,
    domain: Domain,
    values: list[bytes],
    processes: int,
    *,
    name: str,
    profile: Path | None = None,
) -> WorkerRate:
    """The rate of ``processes`` workers over ``values`` (see the module's docstring)."""
    create_domain_topics(settings, domain)
    topics = for_settings(settings, domain)
    prefill = HiddenPrefill(settings, topics.events, values)
    group = WorkerGroup.start(
        env, settings, domain, processes, name=name, profile=profile, idle_timeout_s=600.0
    )
    try:
        ready_s = group.wait_ready()
        prefill.reveal()
        done_wall = wait_committed(
            settings, consumer_group(settings, domain), topics.events, len(values), timeout_s=900.0
        )
    finally:
        results = group.stop()
    first = min(r["first_record_wall"] for r in results if r["consumed"])
    return WorkerRate(
        domain=domain,
        delivery=settings.worker.delivery,
        processes=processes,
        events=len(values),
        seconds=done_wall - first,
        predicted=sum(r["predicted"] for r in results),
        dead_lettered=sum(r["dead_lettered"] for r in results),
        peak_rss_mb=max(r["peak_rss_kb"] or 0 for r in results) / 1024,
        ready_s=ready_s,
    )
