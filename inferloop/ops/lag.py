"""Consumer lag of a domain's group, from the offsets committed in Kafka.

Read from the broker, not from a worker, so the lag shows even when every worker is
down. A partition without a committed offset counts from its first offset (the group
starts there: ``auto_offset_reset`` is ``earliest`` by default).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from kafka import OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError

from inferloop.connections import admin_client, make_consumer
from inferloop.ops.partitions import topic_partitions
from inferloop.settings import Domain, Settings
from inferloop.topics import consumer_group, for_settings


@dataclass(frozen=True)
class PartitionLag:
    """One partition: the group's committed offset, the end, and the gap between."""

    partition: int
    committed: int | None
    end: int
    lag: int


@dataclass(frozen=True)
class GroupLag:
    """The lag of a domain's consumer group on its events topic."""

    group: str
    topic: str
    partitions: tuple[PartitionLag, ...]

    @property
    def total(self) -> int:
        """Messages not yet committed, over every partition."""
        return sum(p.lag for p in self.partitions)


def group_lag(settings: Settings, domain: Domain) -> GroupLag:
    """The lag of ``inferloop-<domain>`` on ``<domain>``, per partition."""
    group = consumer_group(settings, domain)
    topic = for_settings(settings, domain).events
    consumer = make_consumer(settings.kafka, isolation_level="read_committed")
    try:
        partitions = topic_partitions(consumer, topic, settings.kafka.bootstrap_servers)
        # read_committed: the end is the last stable offset, what a worker can reach.
        ends = consumer.end_offsets(partitions)
        starts = consumer.beginning_offsets(partitions)
    finally:
        consumer.close()
    committed = _committed(settings, group, partitions)
    rows = []
    for tp in partitions:
        meta = committed.get(tp)
        offset = meta.offset if meta is not None and meta.offset >= 0 else None
        base = offset if offset is not None else starts[tp]
        rows.append(PartitionLag(tp.partition, offset, ends[tp], max(ends[tp] - base, 0)))
    return GroupLag(group=group, topic=topic, partitions=tuple(rows))


@dataclass(frozen=True)
class Throughput:
    """Records appended to a topic per partition over the last ``window_s``, from Kafka
    alone: the end offsets now against ``offsets_for_times(now - window_s)``."""

    topic: str
    window_s: float
    appended: dict[int, int]

    @property
    def rates(self) -> dict[int, float]:
        """Records per second, per partition."""
        return {p: n / self.window_s for p, n in self.appended.items()}


def throughput(settings: Settings, domain: Domain, *, window_s: float = 60.0) -> Throughput:
    """The predictions written per partition of ``<domain>.predictions`` in the last
    ``window_s`` (a partition with no record since then: 0). Under exactly-once a
    transaction's commit marker takes an offset too (one per transaction and partition)."""
    topic = for_settings(settings, domain).predictions
    consumer = make_consumer(settings.kafka)
    try:
        partitions = topic_partitions(consumer, topic, settings.kafka.bootstrap_servers)
        since_ms = int((time.time() - window_s) * 1000)
        then = consumer.offsets_for_times(dict.fromkeys(partitions, since_ms))
        ends = consumer.end_offsets(partitions)
    finally:
        consumer.close()
    appended = {}
    for tp in partitions:
        found = then.get(tp)
        start = ends[tp] if found is None else found.offset
        appended[tp.partition] = max(ends[tp] - start, 0)
    return Throughput(topic, window_s, appended)


def _committed(
    settings: Settings, group: str, partitions: list[TopicPartition]
) -> dict[TopicPartition, OffsetAndMetadata]:
    # A fresh cluster creates its offsets topic on first use: the coordinator is
    # briefly unavailable, a retriable error.
    deadline = time.monotonic() + settings.kafka.connect_timeout_s
    with admin_client(settings.kafka) as admin:
        while True:
            try:
                answer = admin.list_group_offsets({group: partitions})
            except KafkaError as exc:
                if not exc.retriable or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
                continue
            return dict(answer.get(group, {}))
