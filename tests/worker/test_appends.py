"""A batch appended to the producer's buffers in one pass, against the real broker: the
records, partitions, futures and transactions are those of ``send()``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaProducer, TopicPartition
from kafka.errors import IllegalStateError, MessageSizeTooLargeError

from inferloop.connections import make_consumer, make_producer
from inferloop.kafka_internals import KafkaInternals
from inferloop.settings import Settings

append_records = KafkaInternals().append_records


def read_all(settings: Settings, topic: str, count: int, **options: Any) -> list[Any]:
    """Every record of ``topic`` (``count`` of them, or what arrived within 10 s)."""
    consumer = make_consumer(settings.kafka, auto_offset_reset="earliest", **options)
    consumer.assign([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)])
    seen: list[Any] = []
    deadline = time.monotonic() + 10
    try:
        while len(seen) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                seen.extend(records)
    finally:
        consumer.close()
    return seen


def batch(n: int) -> tuple[list[bytes], list[bytes], list[int]]:
    keys = [uuid.uuid4().hex.encode() for _ in range(n)]
    values = [b'{"event_id": "%s", "score": %d}' % (k, i) for i, k in enumerate(keys)]
    return keys, values, [i % 4 for i in range(n)]


def test_appended_records_arrive_as_sent_ones_do(
    settings: Settings, topic_factory: Callable[..., str]
) -> None:
    by_send, by_append = topic_factory("by-send"), topic_factory("by-append")
    keys, values, partitions = batch(3000)
    producer = make_producer(settings.kafka, acks="all", linger_ms=5)
    try:
        sent = [
            producer.send(by_send, value=v, key=k, partition=p)
            for k, v, p in zip(keys, values, partitions, strict=True)
        ]
        appended = append_records(producer, by_append, keys, values, partitions)
        producer.flush()
        assert len(appended) == len(keys)
        metadata = [f.get(timeout=10) for f in appended]
    finally:
        producer.close()

    assert [(m.topic, m.partition) for m in metadata] == [(by_append, p) for p in partitions]
    assert [m.offset for m in metadata] == [i // 4 for i in range(len(keys))]

    def shape(records: list[Any]) -> list[tuple[Any, ...]]:
        return sorted((r.partition, r.offset, r.key, r.value, r.headers) for r in records)

    expected = shape(read_all(settings, by_send, len(sent)))
    assert len(expected) == len(keys)
    assert shape(read_all(settings, by_append, len(keys))) == expected


@pytest.mark.parametrize("outcome", ["commit", "abort"])
def test_appended_records_belong_to_the_open_transaction(
    settings: Settings, topic_factory: Callable[..., str], outcome: str
) -> None:
    topic = topic_factory()
    keys, values, partitions = batch(200)
    producer = make_producer(
        settings.kafka, acks="all", transactional_id=f"t-{uuid.uuid4().hex[:8]}"
    )
    try:
        producer.init_transactions()
        producer.begin_transaction()
        append_records(producer, topic, keys, values, partitions)
        if outcome == "commit":
            producer.commit_transaction()
        else:
            producer.abort_transaction()
    finally:
        producer.close()
    committed = read_all(settings, topic, len(keys), isolation_level="read_committed")
    assert sorted(r.key for r in committed) == (sorted(keys) if outcome == "commit" else [])


def test_a_batch_with_a_record_past_the_request_size_appends_nothing(
    settings: Settings, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory()
    keys, values, partitions = batch(10)
    values[7] = b"x" * 2_000_000
    producer = make_producer(settings.kafka, acks="all", max_request_size=1_048_576)
    try:
        with pytest.raises(MessageSizeTooLargeError):
            append_records(producer, topic, keys, values, partitions)
        producer.flush()
        after = producer.send(topic, value=b"after", key=b"k", partition=0).get(timeout=10)
    finally:
        producer.close()
    assert after.offset == 0


def test_a_closed_producer_or_a_partition_the_topic_lacks_is_refused(
    settings: Settings, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=2)
    keys, values, _ = batch(4)
    producer: KafkaProducer = make_producer(settings.kafka, acks="all")
    try:
        with pytest.raises(ValueError, match=r"partitions \[3\]"):
            append_records(producer, topic, keys, values, [0, 1, 3, 0])
        assert append_records(producer, topic, [], [], []) == []
    finally:
        producer.close()
    with pytest.raises(IllegalStateError):
        append_records(producer, topic, keys, values, [0, 1, 1, 0])
