"""Reading the dead-letter topic, and redriving chosen letters to their source topic.

``inferloop dlq show`` counts the letters by reason and lists them; ``inferloop dlq
redrive`` republishes the chosen ones (by reason and/or by their DLQ coordinates),
with their original key, bytes and headers, to the topic they came from, once whatever
rejected them has been fixed. A ``too_large`` letter holds only the first 64 KiB of
its message and cannot be redriven; it is skipped and counted.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass

from kafka import TopicPartition

from inferloop.connections import make_consumer, make_producer
from inferloop.ops import letters as dl
from inferloop.ops.errors import DeadLetterError, TopicMissingError
from inferloop.ops.partitions import topic_partitions
from inferloop.settings import Domain, Settings
from inferloop.topics import for_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredLetter:
    """A dead letter as read back from the dead-letter topic."""

    dlq_partition: int
    dlq_offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    reason: str
    detail: str
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    time: str | None

    @property
    def coordinates(self) -> str:
        """``partition:offset`` of the letter in the dead-letter topic."""
        return f"{self.dlq_partition}:{self.dlq_offset}"

    @property
    def redrivable(self) -> bool:
        """False for a truncated (``too_large``) letter or one with neither key nor value."""
        return self.reason != dl.REASON_TOO_LARGE and (self.key is not None or bool(self.value))

    def original_headers(self) -> list[tuple[str, bytes]]:
        """The message's own headers, without the ones the worker added."""
        return [(k, v) for k, v in self.headers if not k.startswith(dl.DLQ_HEADER_PREFIX)]


def _int_or_none(text: str | None) -> int | None:
    return int(text) if text is not None and text.lstrip("-").isdigit() else None


def stored_letter(record: object) -> StoredLetter:
    """A :class:`StoredLetter` from a consumed dead-letter record."""
    headers = tuple((k, v or b"") for k, v in (getattr(record, "headers", None) or ()))
    null = dl.header(headers, dl.H_NULL_VALUE) == "1"
    return StoredLetter(
        dlq_partition=record.partition,  # type: ignore[attr-defined]
        dlq_offset=record.offset,  # type: ignore[attr-defined]
        key=record.key,  # type: ignore[attr-defined]
        value=None if null else record.value,  # type: ignore[attr-defined]
        headers=headers,
        reason=dl.header(headers, dl.H_REASON) or "unknown",
        detail=dl.header(headers, dl.H_DETAIL) or "",
        source_topic=dl.header(headers, dl.H_TOPIC),
        source_partition=_int_or_none(dl.header(headers, dl.H_PARTITION)),
        source_offset=_int_or_none(dl.header(headers, dl.H_OFFSET)),
        time=dl.header(headers, dl.H_TIME),
    )


def iter_letters(
    settings: Settings, domain: Domain, *, timeout_s: float = 30.0
) -> Iterator[StoredLetter]:
    """Every committed letter of the domain's dead-letter topic, up to its current end."""
    topic = for_settings(settings, domain).dlq
    consumer = make_consumer(
        settings.kafka, isolation_level="read_committed", auto_offset_reset="earliest"
    )
    try:
        partitions = topic_partitions(consumer, topic, settings.kafka.bootstrap_servers)
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        open_parts = {tp for tp in partitions if ends[tp] > 0}
        idle_polls = 0
        while open_parts:
            polled = consumer.poll(timeout_ms=500)
            idle_polls = 0 if polled else idle_polls + 1
            if idle_polls * 0.5 > timeout_s:
                raise DeadLetterError(f"reading {topic} stalled for {timeout_s:g} s")
            for records in polled.values():
                for record in records:
                    yield stored_letter(record)
            open_parts = {tp for tp in open_parts if consumer.position(tp) < ends[tp]}
    finally:
        consumer.close()


@dataclass(frozen=True)
class DlqSummary:
    """Counts by reason, and the letters picked for listing."""

    topic: str
    by_reason: dict[str, int]
    letters: tuple[StoredLetter, ...]

    @property
    def total(self) -> int:
        """Every letter read."""
        return sum(self.by_reason.values())


def show(
    settings: Settings, domain: Domain, *, reasons: Collection[str] = (), limit: int = 20
) -> DlqSummary:
    """Count the domain's dead letters by reason; keep the first ``limit`` matching ones."""
    counts: Counter[str] = Counter()
    kept: list[StoredLetter] = []
    for letter in iter_letters(settings, domain):
        if reasons and letter.reason not in reasons:
            continue
        counts[letter.reason] += 1
        if len(kept) < limit:
            kept.append(letter)
    return DlqSummary(for_settings(settings, domain).dlq, dict(counts.most_common()), tuple(kept))


# -- pages of the topic, newest first, read by offset -------------------------------------
# A page with a reason reads at most this many pages' worth of records per partition
# looking for matches (a rare reason among many letters shows on a later page).
SCAN_PAGES = 10


@dataclass(frozen=True)
class DlqPage:
    """One page of letters, newest first, and where the next (older) page starts."""

    topic: str
    letters: tuple[StoredLetter, ...]
    # partition -> the offset the older page reads before; None: nothing older is left.
    older: dict[int, int] | None
    total: int  # the topic's records, from its offsets (no read)
    read: int  # records read for this page: its cost


@dataclass(frozen=True)
class ReasonCounts:
    """Letters by reason among the newest ``scanned`` records (a bounded read)."""

    topic: str
    total: int
    scanned: int
    by_reason: dict[str, int]


class _Ranges:
    """Reads offset ranges of the dead-letter topic's partitions (read_committed)."""

    def __init__(self, settings: Settings, domain: Domain, timeout_s: float = 30.0) -> None:
        self.topic = for_settings(settings, domain).dlq
        self.timeout_s = timeout_s
        self.read = 0
        self.consumer = make_consumer(settings.kafka, isolation_level="read_committed")
        try:
            self.partitions = topic_partitions(
                self.consumer, self.topic, settings.kafka.bootstrap_servers
            )
        except TopicMissingError:
            self.consumer.close()
            raise
        self.starts = {
            tp.partition: o for tp, o in self.consumer.beginning_offsets(self.partitions).items()
        }
        self.ends = {
            tp.partition: o for tp, o in self.consumer.end_offsets(self.partitions).items()
        }

    def close(self) -> None:
        """Close the consumer."""
        self.consumer.close()

    def letters(self, partition: int, start: int, end: int) -> list[StoredLetter]:
        """The letters at offsets ``start`` to ``end`` (excluded) of ``partition``."""
        if start >= end:
            return []
        tp = TopicPartition(self.topic, partition)
        self.consumer.assign([tp])
        self.consumer.seek(tp, start)
        found: list[StoredLetter] = []
        idle = 0.0
        while self.consumer.position(tp) < end:
            polled = self.consumer.poll(timeout_ms=500, max_records=end - start)
            idle = 0.0 if polled else idle + 0.5
            if idle > self.timeout_s:
                raise DeadLetterError(f"reading {self.topic} stalled for {self.timeout_s:g} s")
            for record in polled.get(tp, []):
                if record.offset < end:
                    found.append(stored_letter(record))
        self.read += len(found)
        return found


def _scan_back(
    ranges: _Ranges, partition: int, before: int, per_page: int, reason: str | None
) -> tuple[list[StoredLetter], int]:
    """Matching letters of ``partition`` read backwards from ``before`` in steps of
    ``per_page`` until ``per_page`` match, the start, or ``SCAN_PAGES`` steps; the
    matches (newest first) and the offset the scan stopped at."""
    first, position = ranges.starts[partition], before
    matches: list[StoredLetter] = []
    for _ in range(SCAN_PAGES if reason else 1):
        if position <= first or len(matches) >= per_page:
            break
        start = max(first, position - per_page)
        chunk = ranges.letters(partition, start, position)
        matches += [x for x in reversed(chunk) if reason is None or x.reason == reason]
        position = start
    return matches, position


def _newest(letter: StoredLetter) -> tuple[str, int]:
    return letter.time or "", letter.dlq_offset


def page(
    settings: Settings,
    domain: Domain,
    *,
    before: Mapping[int, int] | None = None,
    per_page: int = 50,
    reason: str | None = None,
) -> DlqPage:
    """The ``per_page`` newest letters (of ``reason``) before the offsets ``before``
    (default: the ends). It reads at most ``per_page`` records per partition
    (``SCAN_PAGES`` times that with a reason), never the whole topic."""
    ranges = _Ranges(settings, domain)
    try:
        cursor = {p: min(end, (before or {}).get(p, end)) for p, end in ranges.ends.items()}
        scans = {p: _scan_back(ranges, p, end, per_page, reason) for p, end in cursor.items()}
    finally:
        ranges.close()
    # Merged newest first, each partition's letters kept in their offset order, so what a
    # page shows of a partition is always its newest matches: nothing is skipped.
    merged = heapq.merge(*(matches for matches, _ in scans.values()), key=_newest, reverse=True)
    shown = list(itertools.islice(merged, per_page))
    for partition, (matches, stopped) in scans.items():
        mine = [x.dlq_offset for x in shown if x.dlq_partition == partition]
        if len(mine) == len(matches):  # all shown (or none found): the scan's stop
            cursor[partition] = stopped
        elif mine:
            cursor[partition] = min(mine)
    left = any(cursor[p] > ranges.starts[p] for p in cursor)
    total = sum(ranges.ends[p] - ranges.starts[p] for p in ranges.ends)
    return DlqPage(ranges.topic, tuple(shown), cursor if left else None, total, ranges.read)


def count_reasons(settings: Settings, domain: Domain, *, last: int = 500) -> ReasonCounts:
    """Letters by reason among the newest ``last`` records of each partition."""
    ranges = _Ranges(settings, domain)
    counts: Counter[str] = Counter()
    try:
        for partition, end in ranges.ends.items():
            start = max(ranges.starts[partition], end - last)
            counts.update(x.reason for x in ranges.letters(partition, start, end))
    finally:
        ranges.close()
    total = sum(ranges.ends[p] - ranges.starts[p] for p in ranges.ends)
    return ReasonCounts(ranges.topic, total, ranges.read, dict(counts.most_common()))


def read_letter(
    settings: Settings, domain: Domain, partition: int, offset: int
) -> StoredLetter | None:
    """The letter at ``partition:offset``, reading that one record; None if none is there."""
    ranges = _Ranges(settings, domain)
    try:
        if (
            partition not in ranges.ends
            or not ranges.starts[partition] <= offset < ranges.ends[partition]
        ):
            return None
        found = ranges.letters(partition, offset, offset + 1)
    finally:
        ranges.close()
    return found[0] if found and found[0].dlq_offset == offset else None


@dataclass(frozen=True)
class RedriveResult:
    """What a redrive did (or, dry, would do)."""

    sent: int
    skipped: int
    by_topic: dict[str, int]
    dry_run: bool


def choose(
    letters: Iterator[StoredLetter], *, reasons: Collection[str], coordinates: Collection[str]
) -> Iterator[StoredLetter]:
    """The letters matching a reason (when given) and a ``partition:offset`` (when given)."""
    if not reasons and not coordinates:
        raise DeadLetterError("choose the letters to redrive with --reason and/or --letter")
    for letter in letters:
        if reasons and letter.reason not in reasons:
            continue
        if coordinates and letter.coordinates not in coordinates:
            continue
        yield letter


def redrive(
    settings: Settings,
    domain: Domain,
    *,
    reasons: Sequence[str] = (),
    coordinates: Sequence[str] = (),
    dry_run: bool = False,
) -> RedriveResult:
    """Republish the chosen letters to their source topic; too_large ones are skipped."""
    topics = for_settings(settings, domain)
    chosen = choose(iter_letters(settings, domain), reasons=reasons, coordinates=coordinates)
    sent = skipped = 0
    by_topic: Counter[str] = Counter()
    futures = []
    producer = None if dry_run else make_producer(settings.kafka, acks="all")
    try:
        for letter in chosen:
            if not letter.redrivable:
                skipped += 1
                continue
            target = letter.source_topic or topics.events
            if producer is not None:
                marker = f"{topics.dlq}/{letter.dlq_partition}/{letter.dlq_offset}".encode()
                futures.append(producer.send(
                    target, key=letter.key, value=letter.value,
                    headers=[*letter.original_headers(), (dl.H_REDRIVEN_FROM, marker)],
                ))  # fmt: skip
            sent += 1
            by_topic[target] += 1
        if producer is not None:
            producer.flush(timeout=60)
        failed = [f.exception for f in futures if f.failed()]
        if failed:
            raise DeadLetterError(
                f"{len(failed)} of {len(futures)} redriven letters were not written: {failed[0]}"
            )
    finally:
        if producer is not None:
            producer.close(timeout=10)
    log.info("redrive of %s: %d sent, %d skipped (too large or empty), dry_run=%s",
             topics.dlq, sent, skipped, dry_run)  # fmt: skip
    return RedriveResult(sent=sent, skipped=skipped, by_topic=dict(by_topic), dry_run=dry_run)
