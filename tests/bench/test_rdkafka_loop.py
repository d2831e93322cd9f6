"""The pass-through baseline on librdkafka, against the real broker."""

from __future__ import annotations

from collections.abc import Callable

from kafka import TopicPartition

from bench.peers.baselines import BASELINES
from bench.stream import read_records
from inferloop.connections import admin_client, make_consumer, make_producer
from inferloop.settings import Settings


def test_the_loop_moves_every_record_unchanged_and_commits_its_group_to_the_end(
    settings: Settings, topic_factory: Callable[..., str]
) -> None:
    source, sink = topic_factory(partitions=3), topic_factory(partitions=3)
    sent = {f"e-{n}".encode(): f'{{"n": {n}}}'.encode() for n in range(500)}
    producer = make_producer(settings.kafka, acks="all")
    try:
        for key, value in sent.items():
            producer.send(source, key=key, value=value)
        producer.flush(30)
    finally:
        producer.close()

    result = BASELINES["rdkafka_pipelined"](settings.kafka, source, sink, len(sent))

    assert result.records == len(sent)
    assert result.name == "pipelined pass-through, librdkafka"
    moved = [(r.key, r.value) for r in read_records(settings, sink)]
    assert sorted(moved) == sorted(sent.items())
    # Its consumer group (the one that committed offsets of this source) is at the end.
    consumer = make_consumer(settings.kafka, enable_auto_commit=False)
    try:
        ends = consumer.end_offsets([TopicPartition(source, p) for p in range(3)])
    finally:
        consumer.close()
    with admin_client(settings.kafka) as admin:
        groups = [group["group_id"] for group in admin.list_groups()]
        offsets = admin.list_group_offsets(dict.fromkeys(groups))
    committed = [
        {tp: meta.offset for tp, meta in of_group.items()}
        for of_group in offsets.values()
        if any(tp.topic == source for tp in of_group)
    ]
    assert committed == [ends]
