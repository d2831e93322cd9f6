"""At-least-once delivery with real Kafka clients: what a revocation does to the batches
in hand."""

from __future__ import annotations

import time

from kafka import TopicPartition
from kafka.admin import ConfigResource

from inferloop.connections import admin_client, make_consumer, make_producer
from inferloop.settings import Settings
from inferloop.topics import DomainTopics
from inferloop.worker.batch import Batch, batch_of
from inferloop.worker.delivery import AtLeastOnce
from tests.worker.conftest import wait_for
from tests.worker.factories import publish_events


def test_a_batch_dropped_at_a_revocation_is_read_again_where_the_partitions_stay(
    wsettings: Settings, topics: DomainTopics
) -> None:
    # Predictions cannot be written: the batch's sends fail, it is never acknowledged.
    with admin_client(wsettings.kafka) as admin:
        admin.alter_configs(
            [ConfigResource("topic", topics.predictions, configs={"max.message.bytes": "120"})]
        )
    publish_events(wsettings, topics.events, range(40))
    consumer = make_consumer(wsettings.kafka, auto_offset_reset="earliest")
    partitions = [TopicPartition(topics.events, p) for p in range(4)]
    consumer.assign(partitions)
    polled: dict[TopicPartition, list[object]] = {}
    deadline = time.monotonic() + 30
    while sum(map(len, polled.values())) < 40 and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=500).items():
            polled.setdefault(tp, []).extend(records)
    batch: Batch = batch_of(polled)
    batch.keys = [r.key for r in batch.records]
    batch.predictions = [b"p" * 300 for _ in batch.records]
    delivery = AtLeastOnce(
        consumer, lambda: make_producer(wsettings.kafka, acks="all"), topics,
        max_in_flight=2, ack_timeout_s=30, revoke_timeout_s=20,
        fault=lambda point: None, on_committed=lambda b: None, on_rewind=lambda o, e: None,
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
