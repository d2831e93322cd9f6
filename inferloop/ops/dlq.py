"""Reading the dead-letter topic, and redriving chosen letters to their source topic.

``inferloop dlq show`` counts the letters by reason and lists them; ``inferloop dlq
redrive`` republishes the chosen ones (by reason and/or by their DLQ coordinates),
with their original key, bytes and headers, to the topic they came from, once whatever
rejected them has been fixed. A ``too_large`` letter holds only the first 64 KiB of
its message and cannot be redriven; it is skipped and counted.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass

from kafka import TopicPartition

from inferloop.connections import make_consumer, make_producer
from inferloop.ops import letters as dl
from inferloop.ops.errors import DeadLetterError, TopicMissingError
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
        numbers = consumer.partitions_for_topic(topic)
        if not numbers:
            raise TopicMissingError(
                f"topic {topic!r} not found on {settings.kafka.bootstrap_servers}"
            )
        partitions = [TopicPartition(topic, p) for p in sorted(numbers)]
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
