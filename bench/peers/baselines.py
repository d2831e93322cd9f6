"""Raw kafka-python loops that set the baselines the worker is measured against.

Each loop consumes ``count`` records of a source topic in a consumer group of its own,
produces their bytes unchanged to a sink topic and commits: no parsing, no model. They
are what a hand-written pass-through does at best, so the worker's efficiency is its
rate over what these loops allow. One more, the pipelined loop on librdkafka, is listed
here too (``rdkafka_pipelined``), for the latency section's half loads.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.producer.future import FutureRecordMetadata

from inferloop.connections import make_consumer, make_producer
from inferloop.settings import KafkaSettings

MAX_POLL_RECORDS = 1000


@dataclass(frozen=True)
class LoopResult:
    """What one loop did: records moved and the seconds it took, first poll to last commit."""

    name: str
    records: int
    seconds: float

    @property
    def rate(self) -> float:
        """Records per second."""
        return self.records / self.seconds if self.seconds > 0 else 0.0


def _consumer(kafka: KafkaSettings, topic: str, **extra: Any) -> KafkaConsumer:
    return make_consumer(
        kafka,
        topic,
        group_id=f"bench-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        max_poll_records=MAX_POLL_RECORDS,
        fetch_max_bytes=52_428_800,
        max_partition_fetch_bytes=4_194_304,
        **extra,
    )


def _producer(kafka: KafkaSettings, **extra: Any) -> KafkaProducer:
    options: dict[str, Any] = {"acks": "all", "linger_ms": 5, "batch_size": 262_144}
    return make_producer(kafka, **(options | extra))


def _next_offsets(
    batch: dict[TopicPartition, list[Any]],
) -> dict[TopicPartition, OffsetAndMetadata]:
    return {tp: OffsetAndMetadata(records[-1].offset + 1, "", -1) for tp, records in batch.items()}


def consume_only(kafka: KafkaSettings, source: str, sink: str, count: int) -> LoopResult:
    """Consume ``count`` records and do nothing with them: the fetch ceiling."""
    consumer = _consumer(kafka, source)
    seen, started = 0, None
    try:
        while seen < count:
            batch = consumer.poll(timeout_ms=500)
            if batch and started is None:
                started = time.perf_counter()
            seen += sum(len(r) for r in batch.values())
        return LoopResult("consume only", seen, time.perf_counter() - (started or 0.0))
    finally:
        consumer.close()


def naive_passthrough(kafka: KafkaSettings, source: str, sink: str, count: int) -> LoopResult:
    """Poll a batch, send each record, ``flush()``, commit the batch's offsets."""
    consumer, producer = _consumer(kafka, source), _producer(kafka)
    seen, started = 0, None
    try:
        while seen < count:
            batch = consumer.poll(timeout_ms=500)
            if not batch:
                continue
            started = started or time.perf_counter()
            for records in batch.values():
                for record in records:
                    producer.send(sink, key=record.key, value=record.value)
                seen += len(records)
            producer.flush()
            consumer.commit(_next_offsets(batch))
        return LoopResult("naive pass-through", seen, time.perf_counter() - (started or 0.0))
    finally:
        producer.close()
        consumer.close()


def pipelined_passthrough(kafka: KafkaSettings, source: str, sink: str, count: int) -> LoopResult:
    """Poll batch k+1 while batch k's sends are in flight; commit k once they are acked."""
    consumer, producer = _consumer(kafka, source), _producer(kafka)
    in_flight: list[tuple[list[FutureRecordMetadata], dict[TopicPartition, OffsetAndMetadata]]]
    in_flight = []
    seen, started = 0, None

    def settle(block: bool) -> None:
        while in_flight and (block or all(f.is_done for f in in_flight[0][0])):
            futures, offsets = in_flight.pop(0)
            for future in futures:
                future.get(timeout=30)
            consumer.commit_async(offsets)

    try:
        while seen < count:
            batch = consumer.poll(timeout_ms=500)
            settle(block=False)
            if not batch:
                continue
            started = started or time.perf_counter()
            futures = [
                producer.send(sink, key=record.key, value=record.value)
                for records in batch.values()
                for record in records
            ]
            seen += len(futures)
            in_flight.append((futures, _next_offsets(batch)))
        producer.flush()
        settle(block=True)
        consumer.commit()
        return LoopResult("pipelined pass-through", seen, time.perf_counter() - (started or 0.0))
    finally:
        producer.close()
        consumer.close()


def transactional_passthrough(
    kafka: KafkaSettings, source: str, sink: str, count: int
) -> LoopResult:
    """One Kafka transaction per batch: sends and the consumer offsets committed together."""
    consumer = _consumer(kafka, source, isolation_level="read_committed")
    producer = _producer(
        kafka,
        transactional_id=f"bench-eos-{uuid.uuid4().hex[:8]}",
        enable_idempotence=True,
        transaction_timeout_ms=10_000,
    )
    producer.init_transactions()
    seen, started = 0, None
    try:
        while seen < count:
            batch = consumer.poll(timeout_ms=500)
            if not batch:
                continue
            started = started or time.perf_counter()
            producer.begin_transaction()
            for records in batch.values():
                for record in records:
                    producer.send(sink, key=record.key, value=record.value)
                seen += len(records)
            producer.send_offsets_to_transaction(_next_offsets(batch), consumer.group_metadata())
            producer.commit_transaction()
        return LoopResult("exactly-once pass-through", seen, time.perf_counter() - (started or 0.0))
    finally:
        producer.close()
        consumer.close()


def rdkafka_pipelined(kafka: KafkaSettings, source: str, sink: str, count: int) -> LoopResult:
    """The pipelined loop on librdkafka (:mod:`bench.peers.rdkafka`), imported only when
    it runs: confluent-kafka is in the ``bench`` extra."""
    from bench.peers.rdkafka import pipelined_passthrough as on_librdkafka  # noqa: PLC0415

    return on_librdkafka(kafka, source, sink, count)


BASELINES: dict[str, Callable[[KafkaSettings, str, str, int], LoopResult]] = {
    "consume": consume_only,
    "naive": naive_passthrough,
    "pipelined": pipelined_passthrough,
    "exactly_once": transactional_passthrough,
    "rdkafka_pipelined": rdkafka_pipelined,
}
