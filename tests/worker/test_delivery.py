"""At-least-once delivery with real Kafka clients: what a revocation does to the batches
in hand."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource

from inferloop.connections import admin_client, make_consumer, make_producer
from inferloop.kafka_internals import KafkaInternals
from inferloop.local.kafka import LocalKafka
from inferloop.settings import Settings
from inferloop.topics import DomainTopics, create_domain_topics, for_settings
from inferloop.worker.batch import Batch, batch_of
from inferloop.worker.delivery import AtLeastOnce
from tests.worker.conftest import DOMAIN, wait_for
from tests.worker.factories import publish_events


def polled_batch(
    wsettings: Settings, topics: DomainTopics, count: int, **consumer: Any
) -> tuple[KafkaConsumer, list[TopicPartition], Batch]:
    """A consumer assigned the events topic, and a batch of the ``count`` events it polled
    (each with a 300-byte prediction)."""
    publish_events(wsettings, topics.events, range(count))
    kafka = make_consumer(wsettings.kafka, auto_offset_reset="earliest", **consumer)
    partitions = [TopicPartition(topics.events, p) for p in range(4)]
    kafka.assign(partitions)
    polled: dict[TopicPartition, list[object]] = {}
    deadline = time.monotonic() + 30
    while sum(map(len, polled.values())) < count and time.monotonic() < deadline:
        for tp, records in kafka.poll(timeout_ms=500).items():
            polled.setdefault(tp, []).extend(records)
    batch: Batch = batch_of(polled)
    batch.keys = [r.key for r in batch.records]
    batch.predictions = [b"p" * 300 for _ in batch.records]
    return kafka, partitions, batch


def alter_predictions_topic(wsettings: Settings, topics: DomainTopics, **configs: str) -> None:
    """Change the predictions topic's configuration."""
    with admin_client(wsettings.kafka) as admin:
        admin.alter_configs([ConfigResource("topic", topics.predictions, configs=configs)])


@pytest.mark.shortcuts_off_too
def test_a_batch_dropped_at_a_revocation_is_read_again_where_the_partitions_stay(
    wsettings: Settings, topics: DomainTopics, internals: KafkaInternals
) -> None:
    # Predictions cannot be written: the batch's sends fail, it is never acknowledged.
    alter_predictions_topic(wsettings, topics, **{"max.message.bytes": "120"})
    consumer, partitions, batch = polled_batch(wsettings, topics, 40)
    delivery = AtLeastOnce(
        consumer, lambda: make_producer(wsettings.kafka, acks="all"), topics,
        max_in_flight=2, ack_timeout_s=30, revoke_timeout_s=20,
        fault=lambda point: None, on_committed=lambda b: None, on_rewind=lambda o, e: None,
        internals=internals,
    )  # fmt: skip
    try:
        delivery.deliver(batch)
        offsets = delivery.on_revoked()
        after = {tp: consumer.position(tp) for tp in partitions}
        delivery.on_assigned(set(partitions))
        wait_for(lambda: all(consumer.position(tp) is not None for tp in partitions), 10)
        back = {tp: consumer.position(tp) for tp in partitions}
    finally:
        delivery.close(1)
        consumer.close()

    assert offsets == {}
    assert after == batch.next_offsets
    assert back == batch.first_offsets


@pytest.mark.shortcuts_off_too
def test_acknowledged_batches_are_committed_asynchronously_at_most_once_an_interval(
    wsettings: Settings, topics: DomainTopics, internals: KafkaInternals
) -> None:
    consumer, partitions, batch = polled_batch(wsettings, topics, 40, group_id="interval")
    first = halves(batch, partitions[:2])
    second = halves(batch, partitions[2:])
    producers: list[KafkaProducer] = []
    committed: list[Batch] = []

    def factory() -> KafkaProducer:
        producers.append(make_producer(wsettings.kafka, acks="all"))
        return producers[-1]

    delivery = AtLeastOnce(
        consumer, factory, topics, max_in_flight=2, ack_timeout_s=30, revoke_timeout_s=20,
        fault=lambda point: None, on_committed=committed.append, on_rewind=lambda o, e: None,
        commit_interval_s=600, internals=internals,
    )  # fmt: skip
    try:
        delivery.deliver(first)
        producers[0].flush()
        delivery.settle()  # acknowledged: its commit is sent, the interval starts
        delivery.deliver(second)
        producers[0].flush()
        delivery.settle()  # acknowledged too, but its commit waits for the interval
        # The answer to the first commit is handled inside a later poll.
        wait_for(lambda: bool(consumer.poll(timeout_ms=50) or committed), 30, "the commit")
        early = {tp: consumer.committed(tp) for tp in partitions}
        waiting = delivery.in_flight()
        drained = delivery.drain(30)  # what is acknowledged is committed at once
        late = {tp: consumer.committed(tp) for tp in partitions}
    finally:
        delivery.close(1)
        consumer.close()

    assert early == first.next_offsets | {tp: None for tp in partitions[2:]}
    assert waiting == 1
    assert drained
    assert late == batch.next_offsets
    assert committed == [first, second]


def halves(batch: Batch, partitions: list[TopicPartition]) -> Batch:
    """The part of ``batch`` on ``partitions``, with its keys and predictions."""
    part = batch_of({tp: [r for r in batch.records if r.partition == tp.partition]
                     for tp in partitions})  # fmt: skip
    part.keys = [r.key for r in part.records]
    part.predictions = [b"p" * 300 for _ in part.records]
    return part


def freeze(pid: int, timeout_s: float = 10.0) -> None:
    """SIGSTOP the process and wait until every one of its threads has stopped.

    ``kill`` returns once the signal is queued: a broker thread still running on the
    other core could answer a send made right after it, which is the likeliest reading
    of one CI run where the frozen broker's sends were acknowledged."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = []
        for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
            try:
                # The state follows the command name, which is in parentheses.
                states.append(stat.read_text().rpartition(")")[2].split()[0])
            except (FileNotFoundError, ProcessLookupError):
                continue  # a thread that just ended
        if states and all(state in ("T", "t") for state in states):
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not stop within {timeout_s:g} s")


@pytest.mark.shortcuts_off_too
def test_a_broker_outage_with_sends_in_flight_rewinds_and_goes_on_with_a_new_producer(
    wsettings: Settings, own_kafka: LocalKafka, internals: KafkaInternals
) -> None:
    # The broker freezes with the batch's sends in flight: they go unanswered past the
    # worker's ack timeout. Closing a producer that still held sends made kafka-python
    # raise, and the worker died of the outage it should have ridden out.
    settings = wsettings.model_copy(
        update={"kafka": wsettings.kafka.model_copy(
            update={"bootstrap_servers": own_kafka.address}
        )}
    )  # fmt: skip
    create_domain_topics(settings, DOMAIN)
    topics = for_settings(settings, DOMAIN)
    consumer, partitions, batch = polled_batch(settings, topics, 40, group_id="outage")
    made: list[KafkaProducer] = []
    rewound: list[dict[TopicPartition, int]] = []

    def factory() -> KafkaProducer:
        made.append(make_producer(settings.kafka, acks="all", delivery_timeout_ms=60_000))
        made[-1].partitions_for(topics.predictions)  # as a worker's has, from its last batch
        return made[-1]

    delivery = AtLeastOnce(
        consumer, factory, topics, max_in_flight=2, ack_timeout_s=2.0, revoke_timeout_s=5,
        fault=lambda point: None, on_committed=lambda b: None,
        on_rewind=lambda offsets, error: rewound.append(offsets), internals=internals,
    )  # fmt: skip
    pid = own_kafka.process.pid()
    assert pid is not None
    try:
        freeze(pid)
        delivery.deliver(batch)
        time.sleep(2.5)
        delivery.settle()  # overdue: rewound, the old producer closed
        in_flight = delivery.in_flight()
        os.kill(pid, signal.SIGCONT)
        back = {tp: consumer.position(tp) for tp in partitions}
        delivery.deliver(batch)
        drained = delivery.drain(30)
        committed = {tp: consumer.committed(tp) for tp in partitions}
    finally:
        os.kill(pid, signal.SIGCONT)
        delivery.close(0)
        consumer.close()

    assert rewound == [batch.first_offsets]
    assert in_flight == 0
    assert back == batch.first_offsets
    assert len(made) == 2
    # Closed, not left retrying its sends (the public close() leaves them to expire).
    assert made[0]._sender.is_alive() is ("force_close" not in internals.enabled)
    assert drained
    assert committed == batch.next_offsets
