"""A range of a topic, read once: from/to offsets or times per partition, committed
records only, stopping at the end offsets taken when it starts.

No consumer group: partitions are assigned by hand and nothing is committed, so a batch
run never moves a worker's offsets. A bound is ``earliest`` / ``end``, a time (ISO 8601
with a time zone, or milliseconds since the epoch: the first record at or after it), or
per-partition offsets ``0=120,1=80`` (partitions not named take the default bound).
The upper bound is exclusive and never past the last stable offset.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from inferloop.batch.errors import TopicRangeError
from inferloop.batch.files import RECORD, Chunk
from inferloop.connections import KAFKA_CONNECT_ERRORS, make_consumer
from inferloop.errors import KafkaUnavailableError
from inferloop.settings import KafkaSettings

log = logging.getLogger(__name__)

EARLIEST = "earliest"
END = "end"
POLL_MS = 500


@dataclass(frozen=True)
class Bound:
    """One end of a range: an edge, a time for every partition, or offsets by partition."""

    edge: str | None = None
    time_ms: int | None = None
    offsets: dict[int, int] = field(default_factory=dict)


def parse_bound(text: str) -> Bound:
    """``earliest``, ``end``, a time or ``P=OFFSET,...`` as a :class:`Bound`."""
    text = text.strip()
    if text in (EARLIEST, END):
        return Bound(edge=text)
    if "=" in text:
        return Bound(offsets=_parse_offsets(text))
    if text.isdigit():
        return Bound(time_ms=int(text))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise TopicRangeError(
            f"{text!r} is not earliest, end, a time or PARTITION=OFFSET[,...]"
        ) from None
    if moment.tzinfo is None:
        raise TopicRangeError(f"the time {text!r} has no time zone")
    return Bound(time_ms=int(moment.timestamp() * 1000))


def _parse_offsets(text: str) -> dict[int, int]:
    offsets: dict[int, int] = {}
    for part in text.split(","):
        partition, _, offset = part.strip().partition("=")
        if not (partition.isdigit() and offset.isdigit()):
            raise TopicRangeError(f"{part!r} is not PARTITION=OFFSET (both whole numbers)")
        offsets[int(partition)] = int(offset)
    return offsets


class TopicRange:
    """The records of ``topic`` between two bounds, in chunks of at most ``chunk_size``."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        start: Bound,
        stop: Bound,
        *,
        chunk_size: int,
        idle_timeout_s: float = 60.0,
    ) -> None:
        self.topic = topic
        self.chunk_size = chunk_size
        self.idle_timeout_s = idle_timeout_s
        self._consumer: KafkaConsumer = make_consumer(
            kafka, isolation_level="read_committed", group_id=None, enable_auto_commit=False
        )
        try:
            self.start, self.stop = self._offsets(start, stop)
        except BaseException:
            self._consumer.close()
            raise
        self.total = sum(max(0, self.stop[tp] - self.start[tp]) for tp in self.start)

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close()

    def __enter__(self) -> TopicRange:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _offsets(
        self, start: Bound, stop: Bound
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        consumer = self._consumer
        try:
            partitions = consumer.partitions_for_topic(self.topic)
        except KAFKA_CONNECT_ERRORS as exc:
            raise KafkaUnavailableError(f"Kafka unreachable: {exc}") from exc
        if not partitions:
            raise TopicRangeError(f"topic {self.topic} does not exist or has no partitions")
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        for bound in (start, stop):
            unknown = sorted(set(bound.offsets) - set(partitions))
            if unknown:
                raise TopicRangeError(f"{self.topic} has no partition {unknown[0]}")
        first = consumer.beginning_offsets(tps)
        end = consumer.end_offsets(tps)
        begin = self._resolve(tps, start, EARLIEST, first, end)
        until = self._resolve(tps, stop, END, first, end)
        begin = {tp: min(max(begin[tp], first[tp]), end[tp]) for tp in tps}
        until = {tp: max(min(until[tp], end[tp]), begin[tp]) for tp in tps}
        return begin, until

    def _resolve(
        self,
        tps: list[TopicPartition],
        bound: Bound,
        default: str,
        first: dict[TopicPartition, int],
        end: dict[TopicPartition, int],
    ) -> dict[TopicPartition, int]:
        edge = bound.edge or default
        out = {tp: first[tp] if edge == EARLIEST else end[tp] for tp in tps}
        if bound.time_ms is not None:
            found = self._consumer.offsets_for_times({tp: bound.time_ms for tp in tps})
            out = {tp: end[tp] if found.get(tp) is None else found[tp].offset for tp in tps}
        for partition, offset in bound.offsets.items():
            out[TopicPartition(self.topic, partition)] = offset
        return out

    def __iter__(self) -> Iterator[Chunk]:
        consumer = self._consumer
        pending = {tp for tp in self.start if self.start[tp] < self.stop[tp]}
        consumer.assign(list(self.start))
        for tp, offset in self.start.items():
            consumer.seek(tp, offset)
        consumer.pause(*[tp for tp in self.start if tp not in pending])
        done = 0
        last_progress = time.monotonic()
        while pending:
            records = self._poll(pending)
            if records:
                done += len(records)
                last_progress = time.monotonic()
                yield self._chunk(records, done)
            elif time.monotonic() - last_progress > self.idle_timeout_s:
                where = ", ".join(f"{tp.partition}@{consumer.position(tp)}" for tp in pending)
                raise TopicRangeError(
                    f"{self.topic}: no records for {self.idle_timeout_s:.0f} s before the "
                    f"end of the range (partition@position: {where})"
                )

    def _poll(self, pending: set[TopicPartition]) -> list[Any]:
        consumer = self._consumer
        polled = consumer.poll(timeout_ms=POLL_MS, max_records=self.chunk_size)
        records: list[Any] = []
        for tp, part in polled.items():
            stop = self.stop[tp]
            records.extend(r for r in part if r.offset < stop)
        for tp in list(pending):
            # The position passes control records too (transaction markers), so it, not
            # the last record seen, says when a partition's range is read.
            if consumer.position(tp) >= self.stop[tp]:
                pending.discard(tp)
                consumer.pause(tp)
        return records

    def _chunk(self, records: list[Any], done: int) -> Chunk:
        return Chunk([r.value for r in records], records, RECORD, done)
