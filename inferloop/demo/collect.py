"""Reading back what a demo run left in Kafka and the registry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kafka import TopicPartition

from inferloop.connections import make_consumer
from inferloop.demo.outcome import DomainRecords, parse_predictions
from inferloop.domains import get_domain
from inferloop.settings import Domain, KafkaSettings, Settings
from inferloop.topics import for_settings

DLQ_REASON_HEADER = "dlq.reason"


@dataclass(frozen=True)
class Record:
    """The parts of a Kafka record the summary needs."""

    key: str
    value: bytes
    timestamp_ms: int
    headers: dict[str, bytes]


def read_all(kafka: KafkaSettings, topic: str) -> Iterator[Record]:
    """Every committed record of ``topic``, from the beginning to the end seen at start."""
    consumer = make_consumer(
        kafka, isolation_level="read_committed", max_poll_records=5000, auto_offset_reset="earliest"
    )
    try:
        numbers = sorted(consumer.partitions_for_topic(topic) or ())
        partitions = [TopicPartition(topic, p) for p in numbers]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            for records in consumer.poll(timeout_ms=1000).values():
                for r in records:
                    yield Record(
                        key=(r.key or b"").decode("utf-8", "replace"),
                        value=r.value or b"",
                        timestamp_ms=r.timestamp,
                        headers={k: v for k, v in (r.headers or [])},
                    )
            remaining = {tp for tp in remaining if consumer.position(tp) < ends[tp]}
    finally:
        consumer.close()


def collect(settings: Settings, domain: Domain) -> DomainRecords:
    """Read the four topics of ``domain``."""
    topics = for_settings(settings, domain)
    events = list(read_all(settings.kafka, topics.events))
    dead = list(read_all(settings.kafka, topics.dlq))
    predictions = parse_predictions(
        (r.value, r.timestamp_ms) for r in read_all(settings.kafka, topics.predictions)
    )
    return DomainRecords(
        replayed_ids=[r.key for r in events],
        event_timestamps_ms={r.key: r.timestamp_ms for r in events},
        predictions=predictions,
        dead_letter_ids=[r.key for r in dead],
        dead_letter_reasons=[r.headers.get(DLQ_REASON_HEADER, b"?").decode() for r in dead],
        labels=_labels(settings, domain),
    )


def _labels(settings: Settings, domain: Domain) -> dict[str, int]:
    positive = get_domain(domain).label_names[1]
    labels: dict[str, int] = {}
    for record in read_all(settings.kafka, for_settings(settings, domain).labels):
        body: dict[str, Any] = json.loads(record.value)
        labels[body["id"]] = int(body["label"] == positive)
    return labels
