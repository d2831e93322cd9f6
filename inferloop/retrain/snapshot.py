"""Reading the labels topic up to fixed end offsets: the data set of one run.

The end offsets taken when the run starts are the data set's identity: the run reads
every partition from its start offset up to them (records produced meanwhile wait for
the next run), and they go into the new version's lineage, so any version can be
rebuilt from the log. Records are parsed in batches into arrays by the domain's
``parse_labelled`` as they arrive, so memory holds the parsed columns and one batch of
raw bytes at a time; what the local cache already holds is not read again.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from inferloop.connections import KAFKA_CONNECT_ERRORS, make_consumer
from inferloop.domains import DomainSpec
from inferloop.retrain.cache import Piece, RecordMark, SnapshotCache
from inferloop.retrain.columns import Columns, concat, from_batch
from inferloop.retrain.errors import SnapshotError
from inferloop.retrain.progress import Progress
from inferloop.settings import KafkaSettings

log = logging.getLogger(__name__)

PARSE_BATCH = 20_000
# A read that makes no progress for this long while records are still due is stuck.
STALL_S = 60.0


@dataclass(frozen=True)
class PartitionRange:
    """The offsets ``[start, end)`` of one partition that a data set holds."""

    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        """How many offsets the range spans."""
        return max(self.end - self.start, 0)


@dataclass
class Snapshot:
    """The labelled examples of a topic up to the end offsets taken at the start."""

    topic: str
    ranges: tuple[PartitionRange, ...]
    taken_at_s: float
    columns: Columns
    rejects: dict[str, int] = field(default_factory=dict)
    records_from_kafka: int = 0
    examples_from_cache: int = 0

    @property
    def records(self) -> int:
        """Offsets the data set spans (records read now or by an earlier run)."""
        return sum(r.size for r in self.ranges)

    def end_offsets(self) -> dict[int, int]:
        """Partition -> end offset."""
        return {r.partition: r.end for r in self.ranges}


def labels_consumer(kafka: KafkaSettings) -> KafkaConsumer:
    """A group-less consumer tuned for reading a whole labels topic quickly."""
    return make_consumer(
        kafka,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        max_poll_records=PARSE_BATCH,
        receive_buffer_bytes=4 * 1024 * 1024,
    )


def plan_ranges(
    consumer: KafkaConsumer, topic: str, window_start_s: float | None = None
) -> tuple[PartitionRange, ...]:
    """Each partition's range: from its first record (or the window's) to its end now."""
    try:
        found = consumer.partitions_for_topic(topic)
        if not found:
            raise SnapshotError(f"labels topic {topic!r} does not exist")
        tps = [TopicPartition(topic, p) for p in sorted(found)]
        ends = consumer.end_offsets(tps)
        begins = consumer.beginning_offsets(tps)
        starts = dict(begins)
        if window_start_s is not None:
            found_at = consumer.offsets_for_times({tp: int(window_start_s * 1000) for tp in tps})
            for tp, hit in found_at.items():
                starts[tp] = ends[tp] if hit is None else max(hit.offset, begins[tp])
    except KAFKA_CONNECT_ERRORS as exc:
        raise SnapshotError(f"reading offsets of {topic!r} failed: {exc}") from exc
    return tuple(PartitionRange(tp.partition, starts[tp], ends[tp]) for tp in tps)


class _PartitionReader:
    """The part of one partition's range that comes from Kafka, parsed batch by batch."""

    def __init__(
        self, spec: DomainSpec, rng: PartitionRange, seek_to: int, verify: RecordMark | None
    ) -> None:
        self.spec = spec
        self.rng = rng
        self.seek_to = seek_to
        self.verify = verify
        self.values: list[bytes] = []
        self.offsets: list[int] = []
        self.parts: list[Columns] = []
        self.rejects: Counter[str] = Counter()
        self.mark: RecordMark | None = None
        self.records = 0
        self.mismatch = False

    def take(self, records: list[Any]) -> int:
        """Keep the records below the end offset; return how many were taken."""
        if self.verify is not None:
            records = self._skip_verified(records)
        kept = [r for r in records if r.offset < self.rng.end]
        if kept:
            self.values.extend(r.value for r in kept)
            self.offsets.extend(r.offset for r in kept)
            self.mark = RecordMark(kept[-1].offset, kept[-1].key)
            self.records += len(kept)
        if len(self.values) >= PARSE_BATCH:
            self.flush()
        return len(kept)

    def _skip_verified(self, records: list[Any]) -> list[Any]:
        """The records after the cache's last one, once it proved to be in Kafka."""
        if not records:
            return records
        if not self._verified(records[0]):
            return []
        return records[1:]

    def _verified(self, record: Any) -> bool:
        assert self.verify is not None
        if record.offset == self.verify.offset and record.key == self.verify.key:
            self.verify = None
            return True
        self.mismatch = True
        return False

    def flush(self) -> None:
        """Parse the raw values held so far."""
        if not self.values:
            return
        batch = self.spec.parse_labelled(self.values)
        self.parts.append(from_batch(batch, self.rng.partition, self.offsets, len(self.values)))
        self.rejects.update(r.reason for r in batch.rejects)
        self.values, self.offsets = [], []


@dataclass
class _Plan:
    """Per partition: cached columns and the reader for the rest."""

    cached: dict[int, Columns] = field(default_factory=dict)
    cached_rejects: dict[int, dict[str, int]] = field(default_factory=dict)
    readers: dict[int, _PartitionReader] = field(default_factory=dict)


class SnapshotReader:
    """Reads a domain's labels topic into :class:`Columns` (through the cache if given).

    Use as a context manager: it holds one group-less consumer until closed.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        spec: DomainSpec,
        cache: SnapshotCache | None,
        progress: Progress | None = None,
    ) -> None:
        self.kafka = kafka
        self.spec = spec
        self.cache = cache
        self.progress = progress or Progress()
        self._consumer: KafkaConsumer | None = None

    def __enter__(self) -> SnapshotReader:
        self._consumer = labels_consumer(self.kafka)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the consumer."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    @property
    def consumer(self) -> KafkaConsumer:
        """The open consumer (the reader must be entered)."""
        if self._consumer is None:
            self._consumer = labels_consumer(self.kafka)
        return self._consumer

    def plan(self, topic: str, window_start_s: float | None = None) -> tuple[PartitionRange, ...]:
        """Take the end offsets now: the ranges of the data set."""
        return plan_ranges(self.consumer, topic, window_start_s)

    def read(
        self,
        topic: str,
        ranges: tuple[PartitionRange, ...],
        taken_at_s: float,
        *,
        check_available: bool = False,
    ) -> Snapshot:
        """Read exactly ``ranges``; with ``check_available``, fail if Kafka lost part of them."""
        if check_available:
            self._check_available(self.consumer, topic, ranges)
        return self._read(self.consumer, topic, ranges, taken_at_s)

    def tail(
        self, topic: str, ranges: tuple[PartitionRange, ...], per_partition: int
    ) -> list[bytes]:
        """The raw values of the last ``per_partition`` records of each range."""
        consumer = self.consumer
        want = {TopicPartition(topic, r.partition): r for r in ranges if r.size}
        consumer.assign(list(want))
        for tp, r in want.items():
            consumer.seek(tp, max(r.start, r.end - per_partition))
        values: list[bytes] = []
        deadline = time.monotonic() + STALL_S
        while want and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                wanted = want.get(tp)
                if wanted is not None:
                    values.extend(x.value for x in records if x.offset < wanted.end)
            for tp in [tp for tp, r in want.items() if consumer.position(tp) >= r.end]:
                want.pop(tp)
        consumer.assign([])
        return values

    def _check_available(
        self, consumer: KafkaConsumer, topic: str, ranges: tuple[PartitionRange, ...]
    ) -> None:
        tps = [TopicPartition(topic, r.partition) for r in ranges]
        try:
            if not consumer.partitions_for_topic(topic):
                raise SnapshotError(f"labels topic {topic!r} does not exist")
            begins = consumer.beginning_offsets(tps)
            ends = consumer.end_offsets(tps)
        except KAFKA_CONNECT_ERRORS as exc:
            raise SnapshotError(f"reading offsets of {topic!r} failed: {exc}") from exc
        for r, tp in zip(ranges, tps, strict=True):
            if r.size and (begins[tp] > r.start or ends[tp] < r.end):
                raise SnapshotError(
                    f"{topic} partition {r.partition} holds offsets [{begins[tp]}, {ends[tp]}), "
                    f"not the range [{r.start}, {r.end}) the data set was read from"
                )

    def _read(
        self,
        consumer: KafkaConsumer,
        topic: str,
        ranges: tuple[PartitionRange, ...],
        taken_at: float,
    ) -> Snapshot:
        plan = self._plan(topic, ranges)
        due = sum(max(r.rng.end - r.seek_to, 0) for r in plan.readers.values())
        with self.progress.step(self.spec.name, "reading the log", due):
            self._consume(consumer, topic, plan)
            if any(r.mismatch for r in plan.readers.values()):
                plan = self._replan_mismatched(topic, ranges, plan)
                self._consume(consumer, topic, plan)
        return self._assemble(topic, ranges, taken_at, plan)

    def _plan(self, topic: str, ranges: tuple[PartitionRange, ...]) -> _Plan:
        plan = _Plan()
        for rng in ranges:
            cached = (
                self.cache.load(topic, rng.partition, rng.start, rng.end) if self.cache else None
            )
            if cached is not None and cached.mark is not None:
                plan.cached[rng.partition] = cached.columns
                plan.cached_rejects[rng.partition] = cached.rejects
                plan.readers[rng.partition] = _PartitionReader(
                    self.spec,
                    PartitionRange(rng.partition, cached.end, rng.end),
                    cached.mark.offset,
                    cached.mark,
                )
            else:
                plan.readers[rng.partition] = _PartitionReader(self.spec, rng, rng.start, None)
        return plan

    def _replan_mismatched(
        self, topic: str, ranges: tuple[PartitionRange, ...], plan: _Plan
    ) -> _Plan:
        by_partition = {r.partition: r for r in ranges}
        fresh = _Plan()
        for partition, reader in plan.readers.items():
            if reader.mismatch:
                log.warning(
                    "snapshot cache of %s p%d no longer matches Kafka: reading it again",
                    topic,
                    partition,
                )
                if self.cache is not None:
                    self.cache.drop(topic, partition)
                rng = by_partition[partition]
                fresh.readers[partition] = _PartitionReader(self.spec, rng, rng.start, None)
            else:
                fresh.readers[partition] = reader
                if partition in plan.cached:
                    fresh.cached[partition] = plan.cached[partition]
                    fresh.cached_rejects[partition] = plan.cached_rejects[partition]
        return fresh

    def _consume(self, consumer: KafkaConsumer, topic: str, plan: _Plan) -> None:
        """Poll until every partition reached its end offset (or proved a cache stale)."""
        pending = {
            TopicPartition(topic, p): r for p, r in plan.readers.items() if not self._done(r)
        }
        consumer.assign(list(pending))
        for tp, reader in pending.items():
            consumer.seek(tp, reader.seek_to)
        last_progress = time.monotonic()
        while pending:
            try:
                batch = consumer.poll(timeout_ms=500)
            except KAFKA_CONNECT_ERRORS as exc:
                raise SnapshotError(f"reading {topic!r} failed: {exc}") from exc
            for tp, records in batch.items():
                if tp in pending:
                    self.progress.advance(pending[tp].take(records))
            if batch:
                last_progress = time.monotonic()
            for tp in [
                tp for tp, r in pending.items() if r.mismatch or consumer.position(tp) >= r.rng.end
            ]:
                pending.pop(tp).flush()
                consumer.pause(tp)
            if pending and time.monotonic() - last_progress > STALL_S:
                raise SnapshotError(f"reading {topic!r} made no progress for {STALL_S:.0f} s")
        consumer.assign([])

    @staticmethod
    def _done(reader: _PartitionReader) -> bool:
        return reader.verify is None and reader.seek_to >= reader.rng.end

    def _assemble(
        self, topic: str, ranges: tuple[PartitionRange, ...], taken_at: float, plan: _Plan
    ) -> Snapshot:
        parts: list[Columns] = []
        rejects: Counter[str] = Counter()
        from_kafka = from_cache = 0
        for rng in ranges:
            reader = plan.readers[rng.partition]
            fresh = concat(reader.parts, self.spec)
            cached = plan.cached.get(rng.partition)
            if cached is not None:
                parts.append(cached)
                from_cache += len(cached)
                rejects.update(plan.cached_rejects.get(rng.partition, {}))
            parts.append(fresh)
            rejects.update(reader.rejects)
            from_kafka += reader.records
            if self.cache is not None:
                piece = Piece(reader.rng.start, rng.end, fresh, reader.mark, dict(reader.rejects))
                self.cache.store(topic, rng.partition, piece)
        return Snapshot(
            topic=topic,
            ranges=ranges,
            taken_at_s=taken_at,
            columns=concat(parts, self.spec),
            rejects=dict(rejects),
            records_from_kafka=from_kafka,
            examples_from_cache=from_cache,
        )


def ranges_from_lineage(partitions: Mapping[str, Any]) -> tuple[PartitionRange, ...]:
    """The ranges a lineage's ``partitions`` mapping (``{"0": {"start", "end"}}``) names."""
    return tuple(
        sorted(
            (PartitionRange(int(p), int(r["start"]), int(r["end"])) for p, r in partitions.items()),
            key=lambda r: r.partition,
        )
    )
