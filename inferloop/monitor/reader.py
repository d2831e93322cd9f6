"""The monitor's Kafka reader: every partition of a domain's labels and predictions.

Manually assigned, never in a consumer group: the offsets live in Redis with the state
built from them (``state.py``), and the reader starts where they say. Labels and
predictions are read ``read_committed``, so an exactly-once worker's aborted
predictions are never counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from kafka import KafkaConsumer, TopicPartition

from inferloop.connections import make_consumer
from inferloop.monitor.errors import MonitorError
from inferloop.monitor.state import offset_field
from inferloop.settings import Settings
from inferloop.topics import DomainTopics

log = logging.getLogger(__name__)

LABELS = "labels"
PREDICTIONS = "predictions"
# How long to wait for a topic's partitions to be known at start.
METADATA_WAIT_S = 30.0


@dataclass
class Polled:
    """One poll's records, split by topic, and the offsets after them."""

    labels: list[bytes | None] = field(default_factory=list)
    predictions: list[bytes | None] = field(default_factory=list)
    offsets: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels) + len(self.predictions)


class Reader:
    """Reads labels and predictions from the stored offsets on."""

    def __init__(self, settings: Settings, topics: DomainTopics, offsets: Mapping[str, int]):
        self._kinds = {topics.labels: LABELS, topics.predictions: PREDICTIONS}
        self.consumer = open_consumer(settings, self._kinds, offsets)

    def poll(self, timeout_ms: int) -> Polled:
        """The next records (at most ``max_batch_size``) and the offsets after them."""
        polled = Polled()
        for tp, records in self.consumer.poll(timeout_ms=timeout_ms).items():
            kind = self._kinds[tp.topic]
            target = polled.labels if kind == LABELS else polled.predictions
            target.extend(r.value for r in records)
            polled.offsets[offset_field(kind, tp.partition)] = records[-1].offset + 1
        return polled

    def labels_caught_up(self) -> bool:
        """Whether every labels partition was read to its end as of the last fetch."""
        for tp in self.consumer.assignment():
            if self._kinds[tp.topic] != LABELS:
                continue
            end = self.consumer.highwater(tp)
            if end is None or self.consumer.position(tp) < end:
                return False
        return True

    def close(self) -> None:
        """Close the consumer (nothing to commit: the offsets are in Redis)."""
        self.consumer.close(autocommit=False)


def open_consumer(
    settings: Settings, kinds: Mapping[str, str], offsets: Mapping[str, int]
) -> KafkaConsumer:
    """A ``read_committed`` consumer assigned every partition of ``kinds``' topics (topic
    -> kind), each at its stored offset (``<kind>:<partition>``) if there is one."""
    section = settings.monitor
    consumer = make_consumer(
        settings.kafka,
        group_id=None,
        isolation_level="read_committed",
        auto_offset_reset=section.auto_offset_reset,
        max_poll_records=section.max_batch_size,
        max_partition_fetch_bytes=section.fetch_partition_bytes,
    )
    try:
        partitions = [tp for topic in kinds for tp in _partitions(consumer, topic)]
        consumer.assign(partitions)
        for tp in partitions:
            stored = offsets.get(offset_field(kinds[tp.topic], tp.partition))
            if stored is not None:
                consumer.seek(tp, stored)
    except BaseException:
        consumer.close()
        raise
    log.info("reading %d partitions of %s", len(partitions), ", ".join(kinds))
    return consumer


def _partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    deadline = time.monotonic() + METADATA_WAIT_S
    while True:
        found = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        if time.monotonic() > deadline:
            raise MonitorError(f"topic {topic} not found (create the domain's topics)")
        time.sleep(0.5)
