"""The latency loads' own clients, on librdkafka (confluent-kafka, in the ``bench`` extra).

On two cores the harness's paced producer and its reader of predictions share the CPU
with the broker and the worker they measure. In kafka-python, both are Python code per
record, and the queueing they cause counts as the worker's latency: the kafka-python
pass-through loop, which parses nothing, measured p99 186 ms at 6,000 msg/s. librdkafka
does the same work in C threads, so what the latency loads measure is the worker.

The worker itself stays on kafka-python; only the producer of the input and the reader
of the predictions change. Both keep the contract of their kafka-python twins in
:mod:`bench.stream`: every record's Kafka timestamp is the moment it was sent,
and a prediction's arrival is noted when the reader takes it from the client.

One more baseline lives here: :func:`pipelined_passthrough`, the pipelined pass-through
loop of :mod:`bench.peers.baselines` on librdkafka. Beside the kafka-python loop at
the half load, it tells what of the tail is kafka-python's and what is the machine's.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from bench.peers.baselines import MAX_POLL_RECORDS, LoopResult
from inferloop.settings import KafkaSettings

Acked = Callable[[int], None]  # the record's timestamp, ms
Failed = Callable[[str, str], None]  # event id, reason

# How often librdkafka reports its statistics: how the sender learns it holds its
# producer id (the report is skipped unread once it does).
STATS_INTERVAL_MS = 50

# What one consume() call takes from the client's queue at most.
READ_BATCH = 10_000


def client_config(kafka: KafkaSettings) -> dict[str, Any]:
    """librdkafka's settings for ``kafka`` (the harness runs on its own plaintext broker)."""
    if kafka.security_protocol != "PLAINTEXT":
        raise ValueError(
            f"the librdkafka harness clients speak PLAINTEXT only, not {kafka.security_protocol}"
        )
    return {"bootstrap.servers": kafka.bootstrap_servers, "client.id": f"{kafka.client_id}-bench"}


class RdkafkaSender:
    """Sends keyed values to one topic, idempotently with ``acks=all``, reporting each
    acknowledgement (with the record's timestamp) and each failure."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        *,
        linger_ms: int,
        delivery_timeout_ms: int,
        acked: Acked,
        failed: Failed,
    ) -> None:
        self._topic = topic
        self._acked = acked
        self._failed = failed
        self._has_producer_id = False
        self._producer = Producer(
            client_config(kafka)
            | {
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": linger_ms,
                "batch.size": 256 * 1024,
                "message.max.bytes": 16 * 1024 * 1024,
                "delivery.timeout.ms": delivery_timeout_ms,
                "queue.buffering.max.messages": 1_000_000,
                "queue.buffering.max.kbytes": 1024 * 1024,
                "statistics.interval.ms": STATS_INTERVAL_MS,
                "stats_cb": self._stats,
            }
        )

    def connect(self, timeout_s: float) -> None:
        """Return once the producer has the topic's metadata and its idempotent producer
        id. A cold producer sends nothing until it has both: measured here, its first
        records at 9,464 msg/s waited 0.5 s for their acknowledgement, and the topic's
        metadata alone did not prevent it."""
        error = self._producer.list_topics(self._topic, timeout=timeout_s).topics[self._topic].error
        if error is not None:
            raise RuntimeError(f"no metadata for {self._topic}: {error.str()}")
        deadline = time.monotonic() + timeout_s
        while not self._has_producer_id:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no idempotent producer id from Kafka in {timeout_s:g} s")
            self._producer.poll(0.01)

    def send(self, event_id: str, value: bytes) -> None:
        """Queue one record; when the client's queue is full, serve it until it is not."""
        _produce(self._producer, self._topic, event_id.encode(), value, self._report)

    def serve(self) -> None:
        """Run the delivery reports that have come in."""
        self._producer.poll(0)

    def flush(self, timeout_s: float) -> None:
        """Wait for every queued record to be acknowledged or to fail."""
        self._producer.flush(timeout_s)

    def close(self) -> None:
        """Nothing to release: a librdkafka producer goes with its last reference."""

    def _stats(self, report: str) -> None:
        if not self._has_producer_id:
            eos = json.loads(report).get("eos", {})
            self._has_producer_id = eos.get("idemp_state") == "Assigned"

    def _report(self, error: Any, message: Any) -> None:
        if error is None:
            self._acked(message.timestamp()[1])
        else:
            self._failed(message.key().decode(), str(error))


def read_committed(
    kafka: KafkaSettings, topic: str, stop: threading.Event
) -> Iterator[tuple[float, list[Any]]]:
    """(arrival wall time, messages) as ``read_committed`` records of every partition of
    ``topic`` come in, from its start, until ``stop`` is set. A message is librdkafka's
    (``key()``, ``partition()``, ``timestamp()``, ``value()``), or an error the client
    reports in its place (``error()`` not None), which it recovers from by itself."""
    consumer = Consumer(
        client_config(kafka)
        | {
            # Never joined nor committed: the partitions are assigned by hand.
            "group.id": f"bench-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
        }
    )
    try:
        partitions = _partitions(consumer, topic)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        while not stop.is_set():
            # What is queued already, at once; otherwise wait for the next one.
            messages = consumer.consume(READ_BATCH, 0) or consumer.consume(1, 0.1)
            if messages:
                yield time.time(), messages
    finally:
        consumer.close()


@dataclass
class _Sent:
    """One consumed batch's records on their way to the sink, and the offsets to commit
    once Kafka has acknowledged every one of them."""

    offsets: list[TopicPartition]
    unacked: int = 0
    failure: str | None = None

    def report(self, error: Any, _message: Any) -> None:
        if error is not None and self.failure is None:
            self.failure = str(error)
        self.unacked -= 1


def pipelined_passthrough(kafka: KafkaSettings, source: str, sink: str, count: int) -> LoopResult:
    """The pipelined pass-through of :mod:`bench.peers.baselines` on librdkafka: take
    what the consumer has queued (up to the kafka-python loop's batch), produce each
    record's key and value unchanged, and commit a batch's offsets once all its records
    are acknowledged, batches in order; the next batch is taken meanwhile. The producer
    is configured as the kafka-python loop's (``acks=all``, 5 ms linger, 256 KiB batches),
    and idempotent, as the worker's is."""
    consumer = Consumer(
        client_config(kafka)
        | {
            "group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # As the kafka-python loop reads (librdkafka's default is read_committed).
            "isolation.level": "read_uncommitted",
        }
    )
    producer = Producer(
        client_config(kafka)
        | {"acks": "all", "enable.idempotence": True, "linger.ms": 5, "batch.size": 256 * 1024}
    )
    in_flight: deque[_Sent] = deque()

    def settle() -> None:
        producer.poll(0)
        while in_flight and in_flight[0].unacked == 0:
            sent = in_flight.popleft()
            if sent.failure is not None:
                raise RuntimeError(f"a send to {sink} failed: {sent.failure}")
            consumer.commit(offsets=sent.offsets, asynchronous=True)

    seen, started = 0, None
    try:
        consumer.subscribe([source])
        while seen < count:
            messages = consumer.consume(MAX_POLL_RECORDS, 0) or consumer.consume(1, 0.5)
            settle()
            if not messages:
                continue
            started = started or time.perf_counter()
            sent = _Sent(offsets=[])
            ends: dict[tuple[str, int], int] = {}
            for message in messages:
                if message.error() is not None:
                    raise RuntimeError(f"consuming {source} failed: {message.error()}")
                _produce(producer, sink, message.key(), message.value(), sent.report)
                sent.unacked += 1
                ends[(message.topic(), message.partition())] = message.offset() + 1
            sent.offsets = [TopicPartition(t, p, offset) for (t, p), offset in ends.items()]
            in_flight.append(sent)
            seen += len(messages)
        producer.flush(30)
        settle()
        if in_flight:
            raise RuntimeError(f"{sum(s.unacked for s in in_flight)} sends to {sink} unanswered")
        consumer.commit(asynchronous=False)
        return LoopResult(
            "pipelined pass-through, librdkafka", seen, time.perf_counter() - (started or 0.0)
        )
    finally:
        consumer.close()


def _produce(
    producer: Any, topic: str, key: bytes | None, value: bytes | None, report: Callable[..., None]
) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, on_delivery=report)
            return
        except BufferError:  # the client's queue is full: serve it until it is not
            producer.poll(0.05)


def _partitions(consumer: Any, topic: str) -> list[int]:
    deadline = time.monotonic() + 30
    while True:
        described = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if described is not None and described.error is None and described.partitions:
            return sorted(described.partitions)
        if time.monotonic() > deadline:
            raise LookupError(f"no partitions of {topic} known after 30 s")
        time.sleep(0.2)
