"""Dead letters: a message the worker could not predict, kept with the reason why.

The value is the original bytes, unchanged, so a fixed message can be redriven to its
source topic as it was. Everything the worker knows about the failure travels in
headers beside it; the original headers follow, untouched. A message larger than the
producer may send is kept as its first 64 KiB with its length and SHA-256 under the
reason ``too_large`` (the original reason is kept in ``dlq.original_reason``), so a
dead letter can always be written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

REASON_TOO_LARGE = "too_large"

TRUNCATED_VALUE_BYTES = 64 * 1024
MAX_KEY_BYTES_WHEN_TRUNCATED = 1024
MAX_DETAIL_CHARS = 2000

H_REASON = "dlq.reason"
H_DETAIL = "dlq.detail"
H_TOPIC = "dlq.source.topic"
H_PARTITION = "dlq.source.partition"
H_OFFSET = "dlq.source.offset"
H_TIMESTAMP = "dlq.source.timestamp_ms"
H_TIME = "dlq.time"
H_WORKER = "dlq.worker"
H_MODEL = "dlq.model"
H_ORIGINAL_REASON = "dlq.original_reason"
H_ORIGINAL_LENGTH = "dlq.original_length"
H_ORIGINAL_SHA256 = "dlq.original_sha256"
H_NULL_VALUE = "dlq.null_value"
H_REDRIVEN_FROM = "dlq.redriven_from"
DLQ_HEADER_PREFIX = "dlq."


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record for the dead-letter topic."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]

    @property
    def reason(self) -> str:
        """The reason header."""
        return header(self.headers, H_REASON) or ""


def header(headers: Sequence[tuple[str, bytes]] | None, name: str) -> str | None:
    """The first header called ``name``, decoded, or None."""
    for key, value in headers or ():
        if key == name:
            return value.decode("utf-8", errors="replace")
    return None


# Kafka's record batch format v2 (KIP-98, the protocol guide's "Record Batch"): a batch
# header of 61 bytes, then per record a length, attributes, timestamp and offset deltas,
# key and value with their lengths, and the headers with theirs. Varints take at most 5
# bytes (32 bits) or 10 (the 64-bit timestamp delta).
_BATCH_HEADER = 61
_RECORD_FIXED = 5 + 1 + 10 + 5 + 5 + 5 + 5  # length, attributes, deltas, key/value lengths, count
_HEADER_FIXED = 5 + 5  # a header's key and value lengths


def record_size(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> int:
    """An upper bound on one record's size in a batch of its own, from the wire format
    (never below the producer's own estimate, which counts its varints exactly)."""
    size = _BATCH_HEADER + _RECORD_FIXED + len(key or b"") + len(value or b"")
    for name, data in headers:
        size += _HEADER_FIXED + len(name.encode("utf-8")) + len(data or b"")
    return size


def make_dead_letter(
    record: Any,
    reason: str,
    detail: str,
    *,
    time_iso: str,
    worker: str,
    max_request_size: int,
    model: str | None = None,
) -> DeadLetter:
    """The dead letter of a consumed ``record`` (a kafka-python ``ConsumerRecord``)."""
    value: bytes | None = record.value
    own = [
        (H_REASON, reason.encode()),
        (H_DETAIL, detail[:MAX_DETAIL_CHARS].encode("utf-8", errors="replace")),
        (H_TOPIC, record.topic.encode()),
        (H_PARTITION, str(record.partition).encode()),
        (H_OFFSET, str(record.offset).encode()),
        (H_TIMESTAMP, str(record.timestamp).encode()),
        (H_TIME, time_iso.encode()),
        (H_WORKER, worker.encode()),
    ]
    if model is not None:
        own.append((H_MODEL, model.encode()))
    if value is None:
        # Kafka needs a key or a value; an empty value marked as null stands in.
        own.append((H_NULL_VALUE, b"1"))
    original_headers = [(k, v if v is not None else b"") for k, v in (record.headers or ())]
    letter = DeadLetter(record.key, value or b"", own + original_headers)
    if record_size(letter.key, letter.value, letter.headers) <= max_request_size:
        return letter
    return truncated(letter, reason, max_request_size)


def truncated(letter: DeadLetter, reason: str, max_request_size: int) -> DeadLetter:
    """``letter`` cut to its first 64 KiB, with its length and SHA-256, as ``too_large``."""
    value = letter.value
    own = [
        (H_REASON, REASON_TOO_LARGE.encode()),
        (H_ORIGINAL_REASON, reason.encode()),
        (H_ORIGINAL_LENGTH, str(len(value)).encode()),
        (H_ORIGINAL_SHA256, hashlib.sha256(value).hexdigest().encode()),
    ]
    kept = [
        (k, v[:MAX_DETAIL_CHARS])
        for k, v in letter.headers
        if k != H_REASON and k.startswith(DLQ_HEADER_PREFIX)
    ]
    key = letter.key[:MAX_KEY_BYTES_WHEN_TRUNCATED] if letter.key is not None else None
    cut = DeadLetter(key, value[:TRUNCATED_VALUE_BYTES], own + kept)
    excess = record_size(cut.key, cut.value, cut.headers) - max_request_size
    while excess > 0 and cut.value:
        # Only a producer limit below 64 KiB gets here: keep what fits (length
        # prefixes shrink with the value, hence the loop).
        cut = DeadLetter(cut.key, cut.value[: max(len(cut.value) - excess, 0)], cut.headers)
        excess = record_size(cut.key, cut.value, cut.headers) - max_request_size
    return cut
