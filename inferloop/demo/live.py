"""The live view: per domain, what the stream, the workers and the registry are doing."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from kafka import KafkaConsumer, TopicPartition
from rich.console import Console, RenderableType
from rich.table import Table

from inferloop.connections import make_consumer
from inferloop.demo.monitoring import MonitorLog
from inferloop.keys import Keys
from inferloop.monitor.state import read_status
from inferloop.registry import Registry
from inferloop.settings import Domain, Settings
from inferloop.topics import consumer_group, for_settings


@dataclass
class DomainState:
    """What the view shows for one domain; the orchestrator sets stage and progress."""

    domain: Domain
    stage: str = "waiting"
    events_total: int = 0
    events_sent: int = 0
    labels_sent: int = 0
    predictions: int = 0
    rate_per_s: float = 0.0
    lag: int | None = None
    champion: int | None = None
    versions: int = 0
    rejected: int = 0
    dead_letters: int = 0
    monitor: MonitorLog = field(default_factory=MonitorLog)
    _last: tuple[float, int] = field(default=(0.0, 0), repr=False)


class Monitor:
    """Reads end offsets, committed offsets and the registry for the live view."""

    def __init__(self, settings: Settings, registry: Registry, domains: tuple[Domain, ...]) -> None:
        self.settings = settings
        self.registry = registry
        self.states = {d: DomainState(d) for d in domains}
        self._consumers: dict[Domain, KafkaConsumer] = {}

    def _consumer(self, domain: Domain) -> KafkaConsumer:
        if domain not in self._consumers:
            self._consumers[domain] = make_consumer(
                self.settings.kafka, group_id=consumer_group(self.settings, domain)
            )
        return self._consumers[domain]

    def refresh(self) -> None:
        """Bring every domain's figures up to date."""
        for domain, state in self.states.items():
            self._refresh_kafka(domain, state)
            self._refresh_registry(domain, state)
            status = read_status(self.registry.client, Keys(self.settings.redis.key_prefix), domain)
            if status is not None:
                state.monitor.observe(status)

    def _refresh_kafka(self, domain: Domain, state: DomainState) -> None:
        consumer = self._consumer(domain)
        topics = for_settings(self.settings, domain)
        state.predictions = _total_end(consumer, topics.predictions)
        state.dead_letters = _total_end(consumer, topics.dlq)
        now = time.monotonic()
        last_t, last_n = state._last
        if last_t and now > last_t:
            state.rate_per_s = max(state.predictions - last_n, 0) / (now - last_t)
        state._last = (now, state.predictions)
        events = _partitions(consumer, topics.events)
        if events:
            ends = consumer.end_offsets(events)
            committed = {tp: consumer.committed(tp) for tp in events}
            state.lag = sum(ends[tp] - (committed[tp] or 0) for tp in events)

    def _refresh_registry(self, domain: Domain, state: DomainState) -> None:
        target = self.registry.resolve(domain)
        state.champion = target.version if target else None
        versions = self.registry.list_versions(domain) if state.champion else []
        state.versions = len(versions)
        state.rejected = sum(1 for v in versions if v.status == "rejected")

    def close(self) -> None:
        """Close the consumers."""
        for consumer in self._consumers.values():
            consumer.close()

    def table(self, elapsed_s: float) -> Table:
        """The view as a table."""
        table = Table(title=f"inferloop demo, {elapsed_s:.0f} s", title_justify="left")
        for column in (
            "domain", "stage", "events", "labels", "predictions", "pred/s", "lag",
            "champion", "versions", "rejected", "dead letters",
        ):  # fmt: skip
            table.add_column(column, justify="left" if column in ("domain", "stage") else "right")
        for s in self.states.values():
            table.add_row(
                s.domain,
                s.stage,
                f"{s.events_sent}/{s.events_total}" if s.events_total else "-",
                str(s.labels_sent),
                str(s.predictions),
                f"{s.rate_per_s:.0f}",
                "-" if s.lag is None else str(s.lag),
                "-" if s.champion is None else f"v{s.champion}",
                str(s.versions),
                str(s.rejected),
                str(s.dead_letters),
            )
        return table


class View(Protocol):
    """Where the live table goes: rich's ``Live`` on a terminal, :class:`LineView` in a log."""

    def update(self, renderable: RenderableType, *, refresh: bool = False) -> Any:
        """Show ``renderable`` (the latest table)."""


class LineView:
    """For output that is not a terminal: the table printed every ``every_s`` seconds."""

    def __init__(self, console: Console, every_s: float = 15.0) -> None:
        self.console = console
        self.every_s = every_s
        self._last = 0.0

    def update(self, renderable: RenderableType, *, refresh: bool = False) -> None:
        """Print ``renderable`` if the last print is ``every_s`` old."""
        now = time.monotonic()
        if refresh or now - self._last >= self.every_s:
            self.console.print(renderable)
            self._last = now


def _partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


def _total_end(consumer: KafkaConsumer, topic: str) -> int:
    partitions = _partitions(consumer, topic)
    return sum(consumer.end_offsets(partitions).values()) if partitions else 0
