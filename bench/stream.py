"""Streams of known ids: a paced producer, a reader of the predictions, and the output
counted against the input. Shared by the latency, swap and soak benchmarks and by every
fault-injection run.

The producer sends ``<tag>-<n>`` for a range of ``n`` at a steady rate; each record's
Kafka timestamp is the moment it was sent. Afterwards the input topic is read back, so
latency counts from the input record's own Kafka timestamp, and every id that Kafka
acknowledged is looked for in the predictions and the dead letters.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError, KafkaTimeoutError

from bench.data import keys_of, with_id
from bench.data import read_values as read_value_file
from bench.env import Child, Env, proc_status_kb, wait_until
from bench.stats import Accounting, percentiles, tally_accounting
from bench.worker import WorkerGroup
from inferloop.connections import make_consumer, make_producer
from inferloop.registry import LoadedModel, Registry
from inferloop.settings import Domain, KafkaSettings, Settings
from inferloop.topics import create_domain_topics, for_settings

log = logging.getLogger(__name__)

# How often the producer wakes up to send what is due (a burst per wake-up).
PACE_TICK_S = 0.002
# How long a producer may take to learn its topic's metadata before it starts.
CONNECT_TIMEOUT_S = 30.0


def registry_champion(settings: Settings, domain: str) -> LoadedModel:
    """The champion of ``domain``, loaded and verified as a worker loads it."""
    with Registry.from_settings(settings) as registry:
        target = registry.resolve(domain)
        if target is None:
            raise LookupError(f"no champion of {domain} in the registry")
        return registry.load(domain, target.version, digest=target.digest)


# -- reading topics back ---------------------------------------------------------------
def _assigned(settings: Settings, topic: str, isolation_level: str) -> KafkaConsumer:
    consumer: KafkaConsumer = make_consumer(
        settings.kafka,
        isolation_level=isolation_level,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=16 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    # A fresh client may not know the topic's partitions at its first metadata answer.
    deadline = time.monotonic() + 30
    while not (numbers := consumer.partitions_for_topic(topic)):
        if time.monotonic() > deadline:
            consumer.close()
            raise LookupError(f"no partitions of {topic} known after 30 s")
        time.sleep(0.2)
    partitions = [TopicPartition(topic, p) for p in sorted(numbers)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    return consumer


def read_records(
    settings: Settings,
    topic: str,
    *,
    limit: int | None = None,
    isolation_level: str = "read_committed",
    timeout_s: float = 120.0,
) -> list[Any]:
    """Every record of ``topic`` up to the end offsets seen now (or the first ``limit``)."""
    consumer = _assigned(settings, topic, isolation_level)
    try:
        partitions = list(consumer.assignment())
        end = consumer.end_offsets(partitions)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200, max_records=10_000).values():
                records.extend(batch)
            if limit is not None and len(records) >= limit:
                return records[:limit]
            if all(consumer.position(tp) >= end[tp] for tp in partitions):
                return records
        raise TimeoutError(f"reading {topic} took longer than {timeout_s:.0f} s")
    finally:
        consumer.close()


def read_values(settings: Settings, topic: str, count: int) -> list[bytes]:
    """The values of the first ``count`` records of ``topic``."""
    return [r.value for r in read_records(settings, topic, limit=count)]


@dataclass(frozen=True)
class InputRecord:
    """Where an input event landed and when its producer sent it."""

    partition: int
    offset: int
    timestamp_ms: int


def input_index(settings: Settings, topic: str) -> dict[str, InputRecord]:
    """Event id -> its record on the input topic (the last one, for a repeated id)."""
    return {
        r.key.decode(): InputRecord(r.partition, r.offset, r.timestamp)
        for r in read_records(settings, topic, isolation_level="read_uncommitted")
        if r.key is not None
    }


# -- the paced producer (runs in a child process) ----------------------------------------
@dataclass
class PacedProducer:
    """Sends ``count`` events ``<tag>-<start..>`` at ``rate_per_s`` (None: flat out)."""

    settings: Settings
    topic: str
    templates: list[bytes]
    tag: str
    count: int
    start: int = 0
    rate_per_s: float | None = None
    linger_ms: int = 1
    delivery_timeout_ms: int = 120_000
    # "kafka-python", or "librdkafka" (the latency loads: :mod:`bench.peers.rdkafka`).
    client: str = "kafka-python"
    # Acknowledgements of the records sent in the first this-many seconds are counted but
    # kept out of ``ack_ms``, as the latency figures leave out their warm-up.
    ack_from_s: float = 0.0
    acked: int = 0
    failed: list[str] = field(default_factory=list)
    ack_ms: list[float] = field(default_factory=list)
    _ack_from_ms: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def from_spec(cls, settings: Settings, spec: dict[str, Any]) -> PacedProducer:
        """The producer a child's spec describes."""
        return cls(
            settings=settings,
            topic=spec["topic"],
            templates=read_value_file(Path(spec["values_path"])),
            tag=spec["tag"],
            count=int(spec["count"]),
            start=int(spec.get("start", 0)),
            rate_per_s=spec.get("rate_per_s"),
            linger_ms=int(spec.get("linger_ms", 1)),
            delivery_timeout_ms=int(spec.get("delivery_timeout_ms", 120_000)),
            client=spec.get("client", "kafka-python"),
            ack_from_s=float(spec.get("ack_from_s", 0.0)),
        )

    def request_stop(self) -> None:
        """Stop sending (what was sent is still flushed)."""
        self._stop.set()

    def run(self) -> dict[str, Any]:
        """Send, flush, and report what Kafka acknowledged."""
        sender = self._sender()
        # The pace starts once the client is ready: a cold librdkafka producer held its
        # first records 0.5 s (metadata, then its producer id), and the burst it then
        # sent took the worker 2 s to drain, which counted as latency.
        sender.connect(CONNECT_TIMEOUT_S)
        sent = 0
        started = time.time()
        # Records carry whole milliseconds: one sent at ``started`` is stamped its floor.
        self._ack_from_ms = int((started + self.ack_from_s) * 1000)
        try:
            sent = self._send_all(sender, started)
            sender.flush(self.delivery_timeout_ms / 1000 + 30)
        finally:
            sender.close()
        return {
            "sent": sent,
            "acked": self.acked,
            "failed": self.failed,
            "start": self.start,
            "first_send_wall": started,
            "seconds": time.time() - started,
            "ack_ms": percentiles(self.ack_ms),
        }

    def _sender(self) -> Sender:
        if self.client == "librdkafka":
            from bench.peers.rdkafka import RdkafkaSender  # noqa: PLC0415 - bench extra

            return RdkafkaSender(
                self.settings.kafka,
                self.topic,
                linger_ms=self.linger_ms,
                delivery_timeout_ms=self.delivery_timeout_ms,
                acked=self._acked,
                failed=self._failed,
            )
        return KafkaPythonSender(
            self.settings.kafka,
            self.topic,
            linger_ms=self.linger_ms,
            delivery_timeout_ms=self.delivery_timeout_ms,
            acked=self._acked,
            failed=self._failed,
        )

    def _send_all(self, sender: Sender, started: float) -> int:
        size = len(self.templates)
        sent = 0
        while sent < self.count and not self._stop.is_set():
            due = (
                self.count
                if self.rate_per_s is None
                else int((time.time() - started) * self.rate_per_s) + 1
            )
            while sent < min(due, self.count):
                n = self.start + sent
                event_id = f"{self.tag}-{n}"
                sender.send(event_id, with_id(self.templates[n % size], event_id))
                sent += 1
            sender.serve()
            if self.rate_per_s is not None:
                time.sleep(PACE_TICK_S)
        return sent

    def _acked(self, timestamp_ms: int) -> None:
        self.acked += 1
        # Send (the record's timestamp) to acknowledgement: the producer's own share.
        if timestamp_ms >= self._ack_from_ms:
            self.ack_ms.append(time.time() * 1000 - timestamp_ms)

    def _failed(self, event_id: str, reason: str) -> None:
        self.failed.append(event_id)


class Sender(Protocol):
    """How the paced producer hands records to a Kafka client."""

    def connect(self, timeout_s: float) -> None:
        """Return once the client has the topic's metadata and can send at once."""

    def send(self, event_id: str, value: bytes) -> None:
        """Queue one record keyed by its id."""

    def serve(self) -> None:
        """Run the acknowledgements and failures that have come in."""

    def flush(self, timeout_s: float) -> None:
        """Wait for every queued record to be acknowledged or to fail."""

    def close(self) -> None:
        """Release the client."""


class KafkaPythonSender:
    """The paced producer's records through kafka-python: idempotent, ``acks=all``."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        *,
        linger_ms: int,
        delivery_timeout_ms: int,
        acked: Callable[[int], None],
        failed: Callable[[str, str], None],
    ) -> None:
        self._topic = topic
        self._acked = acked
        self._failed = failed
        self._producer = make_producer(
            kafka,
            acks="all",
            enable_idempotence=True,
            linger_ms=linger_ms,
            batch_size=256 * 1024,
            max_request_size=16 * 1024 * 1024,
            delivery_timeout_ms=delivery_timeout_ms,
            request_timeout_ms=min(30_000, delivery_timeout_ms - linger_ms - 1),
        )

    def connect(self, timeout_s: float) -> None:
        """Fetch the topic's metadata (a first ``send()`` blocks ~0.1 s on it)."""
        # partitions_for() waits the producer's max_block_ms (60 s) with no timeout of its
        # own; it is this call of kafka-python 3.0 (pinned) with the timeout passed in.
        try:
            self._producer._wait_on_metadata(self._topic, int(timeout_s * 1000))
        except KafkaTimeoutError as exc:
            raise TimeoutError(f"no metadata for {self._topic} in {timeout_s:g} s") from exc

    def send(self, event_id: str, value: bytes) -> None:
        """Queue one record keyed by its id."""
        future = self._producer.send(self._topic, key=event_id.encode(), value=value)
        future.add_callback(lambda metadata: self._acked(metadata.timestamp))
        future.add_errback(lambda exc: self._failed(event_id, repr(exc)))

    def serve(self) -> None:
        """Nothing: kafka-python's sender thread runs the callbacks."""

    def flush(self, timeout_s: float) -> None:
        """Wait for every queued record to be acknowledged or to fail."""
        self._producer.flush(timeout=timeout_s)

    def close(self) -> None:
        """Close the client."""
        self._producer.close(timeout=10)


# -- reading predictions as they come (a thread of the harness) --------------------------
@dataclass
class Received:
    """One prediction read back: its key, partition, Kafka timestamp and when it arrived."""

    key: str
    partition: int
    timestamp_ms: int
    received_wall: float
    value: bytes | None


class PredictionReader:
    """Reads a topic from its start as records are committed, noting when each arrives,
    with kafka-python or (``client="librdkafka"``) :mod:`bench.peers.rdkafka`."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        *,
        keep_values: bool = False,
        client: str = "kafka-python",
    ) -> None:
        self._settings = settings
        self._topic = topic
        self._keep_values = keep_values
        self._client = client
        self.received: list[Received] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-reader", daemon=True)

    def start(self) -> PredictionReader:
        """Start reading in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> list[Received]:
        """Stop reading; what was received."""
        self._stop.set()
        self._thread.join(30)
        return self.received

    def count(self) -> int:
        """Records received so far."""
        return len(self.received)

    def _run(self) -> None:
        if self._client == "librdkafka":
            self._run_librdkafka()
            return
        consumer = _assigned(self._settings, self._topic, "read_committed")
        keep = self._keep_values
        try:
            while not self._stop.is_set():
                try:
                    polled = consumer.poll(timeout_ms=100)
                except KafkaError as exc:  # the broker may be down in a fault run
                    self.errors.append(repr(exc))
                    time.sleep(0.5)
                    continue
                now = time.time()
                for batch in polled.values():
                    self.received.extend(
                        Received(
                            r.key.decode() if r.key else "",
                            r.partition,
                            r.timestamp,
                            now,
                            r.value if keep else None,
                        )
                        for r in batch
                    )
        finally:
            consumer.close()

    def _run_librdkafka(self) -> None:
        from bench.peers.rdkafka import read_committed  # noqa: PLC0415 - bench extra

        keep = self._keep_values
        for now, messages in read_committed(self._settings.kafka, self._topic, self._stop):
            for m in messages:
                if m.error() is not None:
                    self.errors.append(str(m.error()))
                    continue
                key = m.key()
                self.received.append(
                    Received(
                        key.decode() if key else "",
                        m.partition(),
                        m.timestamp()[1],
                        now,
                        m.value() if keep else None,
                    )
                )


def publish(settings: Settings, topic: str, values: list[bytes]) -> None:
    """Send every value keyed by its id, as fast as the broker takes them; wait for all."""
    producer = make_producer(
        settings.kafka,
        acks="all",
        linger_ms=20,
        batch_size=512 * 1024,
        max_request_size=16 * 1024 * 1024,
    )
    try:
        for key, value in zip(keys_of(values), values, strict=True):
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=300)
    finally:
        producer.close(timeout=10)


# -- counting every id of a tag in the output -----------------------------------------------
@dataclass
class Tally:
    """How many times each id ``<tag>-<n>`` (n < size) was found, and what else was."""

    tag: str
    size: int
    counts: Any = None  # numpy uint16 array, one count per n
    records: int = 0
    others: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.counts = np.zeros(self.size, dtype=np.uint16)

    def add(self, key: bytes | None) -> None:
        """Count one output record by its key."""
        self.records += 1
        text = key.decode(errors="replace") if key else ""
        head, _, number = text.rpartition("-")
        if head == self.tag and number.isdigit() and int(number) < self.size:
            self.counts[int(number)] += 1
        else:
            self.others[text] += 1


def tally_topic(
    settings: Settings, topic: str, tag: str, size: int, isolation_level: str = "read_committed"
) -> Tally:
    """Count the keys of every record of ``topic`` (without keeping the records)."""
    tally = Tally(tag, size)
    consumer = _assigned(settings, topic, isolation_level)
    try:
        partitions = list(consumer.assignment())
        end = consumer.end_offsets(partitions)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200, max_records=20_000).values():
                for record in batch:
                    tally.add(record.key)
            if all(consumer.position(tp) >= end[tp] for tp in partitions):
                return tally
        raise TimeoutError(f"counting {topic} took longer than 600 s")
    finally:
        consumer.close()


def account(
    settings: Settings,
    predictions_topic: str,
    dlq_topic: str,
    produced: list[dict[str, Any]],
    tag: str,
    *,
    extra: Counter[str] | None = None,
) -> Accounting:
    """Every acknowledged id of the producer results, and the ``extra`` ids (id -> times
    sent) sent besides, against predictions + dead letters."""
    size = max(int(r["start"]) + int(r["sent"]) for r in produced)
    expected = np.zeros(size, dtype=np.uint16)
    for r in produced:
        start = int(r["start"])
        expected[start : start + int(r["sent"])] += 1
        for failed in r["failed"]:
            expected[int(failed.rpartition("-")[2])] -= 1
    predicted = tally_topic(settings, predictions_topic, tag, size)
    dead = tally_topic(settings, dlq_topic, tag, size)
    streamed = tally_accounting(
        expected, predicted.counts.astype(np.int64) + dead.counts, predictions=0, dead_letters=0
    )
    others = Accounting.of(extra or Counter(), predicted.others.elements(), dead.others.elements())
    return Accounting(
        events_in=streamed.events_in + others.events_in,
        predictions=predicted.records,
        dead_letters=dead.records,
        lost=streamed.lost + others.lost,
        duplicated=streamed.duplicated + others.duplicated,
        unexpected=streamed.unexpected + others.unexpected,
    )


# -- resident memory of child processes over time ---------------------------------------------
class RssSampler:
    """Samples the resident memory of some processes every ``interval_s`` in a thread."""

    def __init__(self, pids: list[int], interval_s: float) -> None:
        self.pids = pids
        self.interval_s = interval_s
        self.samples: list[tuple[float, int, int]] = []  # (wall time, pid, KiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> RssSampler:
        """Start sampling."""
        self._thread.start()
        return self

    def stop(self) -> list[tuple[float, int, int]]:
        """Stop; every sample."""
        self._stop.set()
        self._thread.join(10)
        return self.samples

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            for pid in self.pids:
                kb = proc_status_kb(pid, "VmRSS")
                if kb is not None:
                    self.samples.append((now, pid, kb))
            self._stop.wait(self.interval_s)

    def series_mb(self, since: float) -> tuple[list[float], list[float]]:
        """(seconds since ``since``, total MB of the sampled processes) per sampling moment."""
        by_time: dict[float, int] = {}
        for wall, _, kb in self.samples:
            by_time[wall] = by_time.get(wall, 0) + kb
        times = sorted(by_time)
        return [t - since for t in times], [by_time[t] / 1024 for t in times]


# -- a stream through running workers -------------------------------------------------------
def producer_spec(
    settings: Settings,
    topic: str,
    templates: Path,
    tag: str,
    count: int,
    *,
    client: str = "kafka-python",
) -> dict[str, Any]:
    """A ``produce`` child's spec: ``<tag>-0..count`` as fast as it can, unless changed."""
    return {
        "settings": settings.model_dump(mode="json"),
        "topic": topic,
        "values_path": str(templates),
        "tag": tag,
        "count": count,
        "start": 0,
        "rate_per_s": None,
        "delivery_timeout_ms": 120_000,
        "client": client,
    }


class StreamRun:
    """Workers of a domain on fresh topics, a reader of their predictions, and producers
    of known ids: what the latency, swap, soak and fault runs share."""

    def __init__(
        self,
        env: Env,
        settings: Settings,
        domain: Domain,
        templates: Path,
        *,
        name: str,
        processes: int = 1,
        keep_values: bool = False,
        read: bool = True,
        client: str = "kafka-python",
    ) -> None:
        self.env = env
        self.settings = settings
        self.domain = domain
        self.templates = templates
        self.name = name
        self.client = client
        self.topics = for_settings(settings, domain)
        create_domain_topics(settings, domain)
        self.workers = WorkerGroup.start(env, settings, domain, processes, name=name)
        self.reader = (
            PredictionReader(
                settings, self.topics.predictions, keep_values=keep_values, client=client
            )
            if read
            else None
        )
        self.produced: list[dict[str, Any]] = []

    def start(self) -> StreamRun:
        """Wait until the workers hold every partition; start reading."""
        self.workers.wait_ready()
        # The harness holds the corpora and indexes (millions of objects): the cyclic
        # collector's full passes over them stalled the reader thread for hundreds of
        # milliseconds, which counted as latency. Frozen, as the worker freezes its own.
        gc.collect()
        gc.freeze()
        if self.reader is not None:
            self.reader.start()
        return self

    def produce(
        self,
        tag: str,
        count: int,
        rate_per_s: float | None,
        *,
        start: int = 0,
        delivery_timeout_ms: int = 120_000,
        ack_from_s: float = 0.0,
    ) -> Child:
        """Start a producer child sending ``<tag>-<start..start+count>``; the
        acknowledgement times leave out the records of its first ``ack_from_s``."""
        spec = producer_spec(
            self.settings, self.topics.events, self.templates, tag, count, client=self.client
        ) | {
            "start": start,
            "rate_per_s": rate_per_s,
            "delivery_timeout_ms": delivery_timeout_ms,
            "ack_from_s": ack_from_s,
        }
        return self.env.spawn("produce", spec, f"{self.name}-produce")

    def produced_by(self, child: Child, timeout_s: float) -> dict[str, Any]:
        """Wait for a producer child; keep and return its result."""
        result = child.wait(timeout_s)
        self.produced.append(result)
        return result

    def wait_predicted(self, count: int, timeout_s: float) -> None:
        """Wait until the reader has ``count`` predictions."""
        assert self.reader is not None
        reader = self.reader
        wait_until(lambda: reader.count() >= count, timeout_s, f"{count} predictions", 0.1)

    def stop(self) -> list[dict[str, Any]]:
        """Stop the workers and the reader; the workers' results."""
        results = self.workers.stop()
        if self.reader is not None:
            self.reader.stop()
        return results

    def account(self, tag: str, extra: Counter[str] | None = None) -> Accounting:
        """Every acknowledged id (and ``extra``) against predictions + dead letters."""
        return account(
            self.settings, self.topics.predictions, self.topics.dlq, self.produced, tag, extra=extra
        )
