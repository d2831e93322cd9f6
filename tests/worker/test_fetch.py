"""Topping up a stale batch with the answer to the fetch its poll sent, on real Kafka."""

from __future__ import annotations

import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from inferloop.connections import make_consumer, make_producer
from inferloop.kafka_internals import KafkaInternals
from inferloop.settings import Settings
from inferloop.topics import DomainTopics
from inferloop.worker.fetch import top_up
from inferloop.worker.loop import Worker
from tests.worker.conftest import with_worker


def send(settings: Settings, topic: str, ids: range, *, age_s: float) -> None:
    """Records ``ids`` on partition 0, their timestamps ``age_s`` in the past."""
    producer = make_producer(settings.kafka, acks="all")
    stamp = int((time.time() - age_s) * 1000)
    for i in ids:
        producer.send(topic, value=b"{}", key=str(i).encode(), partition=0, timestamp_ms=stamp)
    producer.flush()
    producer.close()


def first_poll(settings: Settings, topic: str, count: int) -> tuple[KafkaConsumer, Any]:
    """A consumer of partition 0 and its first poll holding ``count`` records (after
    which it has sent its next fetch, as every poll that hands records out does)."""
    consumer = make_consumer(settings.kafka, auto_offset_reset="earliest")
    consumer.assign([TopicPartition(topic, 0)])
    polled: dict[TopicPartition, list[Any]] = {}
    deadline = time.monotonic() + 30
    while sum(map(len, polled.values())) < count and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=500).items():
            polled.setdefault(tp, []).extend(records)
    assert sum(map(len, polled.values())) == count
    return consumer, polled


def offsets(polled: dict[TopicPartition, list[Any]]) -> list[int]:
    return [r.offset for records in polled.values() for r in records]


def test_a_stale_batch_takes_in_what_arrived_meanwhile(
    wsettings: Settings, topics: DomainTopics
) -> None:
    send(wsettings, topics.events, range(10), age_s=5)
    consumer, polled = first_poll(wsettings, topics.events, 10)
    try:
        # Arrives while the batch would be scored: the fetch in flight brings it.
        send(wsettings, topics.events, range(10, 25), age_s=5)
        topped = top_up(consumer, polled, wanted=100, top_up_ms=3000, internals=KafkaInternals())
        after = consumer.position(TopicPartition(topics.events, 0))
    finally:
        consumer.close()
    assert offsets(topped) == list(range(25))
    assert after == 25


def test_a_fresh_or_full_batch_is_left_as_it_is(wsettings: Settings, topics: DomainTopics) -> None:
    send(wsettings, topics.events, range(10), age_s=0)
    consumer, polled = first_poll(wsettings, topics.events, 10)
    try:
        send(wsettings, topics.events, range(10, 20), age_s=0)
        fresh = top_up(consumer, polled, wanted=100, top_up_ms=20_000, internals=KafkaInternals())
        full = top_up(consumer, polled, wanted=10, top_up_ms=1, internals=KafkaInternals())
    finally:
        consumer.close()
    assert offsets(fresh) == list(range(10))
    assert offsets(full) == list(range(10))


def test_the_worker_fetches_with_its_settings(wsettings: Settings, topics: DomainTopics) -> None:
    # A low-rate deployment trades latency for CPU with these two: the broker holds a
    # fetch until it has the bytes or the time is up.
    settings = with_worker(wsettings, fetch_min_bytes=65_536, fetch_max_wait_ms=10)
    consumer = Worker(settings, "transactions")._make_consumer()
    try:
        config = consumer.config
    finally:
        consumer.close()
    assert (config["fetch_min_bytes"], config["fetch_max_wait_ms"]) == (65_536, 10)
