"""A consumer's per-poll questions to kafka-python's IO thread, answered from its own
state when it can, on the real broker: what is asked, and that records still flow."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer

from inferloop.connections import make_consumer, make_producer
from inferloop.kafka_internals import KafkaInternals
from inferloop.settings import Settings

# Long enough that the fetch in flight while the test polls is not answered meanwhile.
FETCH_WAIT_MS = 10_000


def send(settings: Settings, topic: str, count: int) -> None:
    producer = make_producer(settings.kafka, acks="all")
    for i in range(count):
        producer.send(topic, value=b"{}", key=str(i).encode())
    producer.flush()
    producer.close()


def asked(consumer: KafkaConsumer) -> Counter[str]:
    """Counts, by name, of the tasks the caller's thread hands the consumer's IO thread
    and waits for, from now on."""
    net = consumer._fetcher._manager._net
    counts: Counter[str] = Counter()
    run = net.run

    def counting_run(coro: Any, *args: Any) -> Any:
        counts[getattr(coro, "__name__", repr(coro))] += 1
        return run(coro, *args)

    net.run = counting_run
    return counts


def drain(consumer: KafkaConsumer, count: int) -> int:
    """Poll until ``count`` records came (or 30 s passed); how many came."""
    seen = 0
    deadline = time.monotonic() + 30
    while seen < count and time.monotonic() < deadline:
        seen += sum(map(len, consumer.poll(timeout_ms=200).values()))
    return seen


@pytest.fixture
def subscribed(
    settings: Settings, topic_factory: Callable[..., str]
) -> Iterator[Callable[[bool], tuple[KafkaConsumer, str]]]:
    """A consumer in a group of its own, subscribed to a new topic holding 20 records
    and having read them; with the shortcuts or without."""
    consumers: list[KafkaConsumer] = []

    def make(spared: bool) -> tuple[KafkaConsumer, str]:
        topic = topic_factory(partitions=3)
        send(settings, topic, 20)
        consumer = make_consumer(
            settings.kafka,
            topic,
            group_id=f"handoffs-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_WAIT_MS,
        )
        consumers.append(consumer)
        if spared:
            KafkaInternals().spare_handoffs(consumer)
        assert drain(consumer, 20) == 20
        return consumer, topic

    yield make
    for consumer in consumers:
        consumer.close()


def idle_polls(consumer: KafkaConsumer, count: int) -> Counter[str]:
    """What ``count`` polls finding nothing to read ask, once a first one has sent the
    fetch that the broker then holds for ``FETCH_WAIT_MS``."""
    assert consumer.poll(timeout_ms=0) == {}
    counts = asked(consumer)
    for _ in range(count):
        assert consumer.poll(timeout_ms=0) == {}
    return counts


def test_a_poll_with_a_fetch_in_flight_asks_only_for_the_wait(
    subscribed: Callable[[bool], tuple[KafkaConsumer, str]],
) -> None:
    consumer, _ = subscribed(True)
    counts = idle_polls(consumer, 5)
    assert counts == Counter(wait_for=5)


def test_without_the_shortcuts_every_poll_asks_all_three(
    subscribed: Callable[[bool], tuple[KafkaConsumer, str]],
) -> None:
    consumer, _ = subscribed(False)
    counts = idle_polls(consumer, 5)
    assert counts == Counter(ensure_coordinator_ready_async=5, _send_fetches_async=5, wait_for=5)


def test_records_keep_coming_fetch_after_fetch(
    settings: Settings, subscribed: Callable[[bool], tuple[KafkaConsumer, str]]
) -> None:
    consumer, topic = subscribed(True)
    counts = asked(consumer)
    for _ in range(3):
        send(settings, topic, 50)
        assert drain(consumer, 50) == 50
    # Each round's records came by a fetch sent once the one before it was answered.
    assert counts["_send_fetches_async"] >= 3


def test_a_lost_coordinator_is_asked_for_again(
    settings: Settings, subscribed: Callable[[bool], tuple[KafkaConsumer, str]]
) -> None:
    consumer, topic = subscribed(True)
    coordinator = consumer._coordinator
    found = coordinator.coordinator_id
    counts = asked(consumer)
    coordinator.coordinator_dead("forgotten by the test")
    send(settings, topic, 10)
    assert drain(consumer, 10) == 10
    assert counts["ensure_coordinator_ready_async"] >= 1
    assert coordinator.coordinator_id == found
