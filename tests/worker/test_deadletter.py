"""Dead letters keep the original bytes, say why, and always fit the producer's limit."""

from __future__ import annotations

import hashlib

import pytest
from kafka.consumer.fetcher import ConsumerRecord

from inferloop.worker import deadletter as dl

LIMIT = 1_048_576


def record(value: bytes | None, key: bytes | None = b"k1", headers=None) -> ConsumerRecord:  # type: ignore[no-untyped-def]
    return ConsumerRecord(
        "events", 2, -1, 41, 1_700_000_000_000, 0, key, value, headers or [], None,
        len(key or b""), len(value or b""), 0,
    )  # fmt: skip


def letter_of(value: bytes | None, **kwargs: object) -> dl.DeadLetter:
    return dl.make_dead_letter(
        record(value, **kwargs),  # type: ignore[arg-type]
        "not_json",
        "Expecting value: line 1 column 1",
        time_iso="2024-01-01T00:00:00+00:00",
        worker="host-0",
        max_request_size=LIMIT,
    )


def test_original_bytes_key_and_headers_are_kept_with_the_reason_and_source() -> None:
    letter = letter_of(b"\xff{not json", headers=[("trace", b"abc")])

    assert letter.value == b"\xff{not json"
    assert letter.key == b"k1"
    assert dl.header(letter.headers, dl.H_REASON) == "not_json"
    assert dl.header(letter.headers, dl.H_TOPIC) == "events"
    assert dl.header(letter.headers, dl.H_PARTITION) == "2"
    assert dl.header(letter.headers, dl.H_OFFSET) == "41"
    assert dl.header(letter.headers, dl.H_TIMESTAMP) == "1700000000000"
    assert ("trace", b"abc") in letter.headers
    assert dl.record_size(letter.key, letter.value, letter.headers) <= LIMIT


def test_a_message_over_the_producer_limit_keeps_64_kib_its_length_and_hash() -> None:
    value = bytes(range(256)) * 8192  # 2 MiB
    letter = letter_of(value)

    assert letter.reason == dl.REASON_TOO_LARGE
    assert letter.value == value[: 64 * 1024]
    assert dl.header(letter.headers, dl.H_ORIGINAL_REASON) == "not_json"
    assert dl.header(letter.headers, dl.H_ORIGINAL_LENGTH) == str(len(value))
    assert dl.header(letter.headers, dl.H_ORIGINAL_SHA256) == hashlib.sha256(value).hexdigest()
    assert dl.header(letter.headers, dl.H_OFFSET) == "41"
    assert dl.record_size(letter.key, letter.value, letter.headers) <= LIMIT


def test_a_huge_key_is_cut_too_so_the_letter_still_fits() -> None:
    letter = letter_of(b"x" * 10, key=b"k" * (2 * LIMIT))

    assert letter.reason == dl.REASON_TOO_LARGE
    assert letter.key is not None
    assert len(letter.key) == dl.MAX_KEY_BYTES_WHEN_TRUNCATED
    assert dl.record_size(letter.key, letter.value, letter.headers) <= LIMIT


def test_a_tombstone_becomes_an_empty_value_marked_null() -> None:
    letter = letter_of(None)

    assert letter.value == b""
    assert dl.header(letter.headers, dl.H_NULL_VALUE) == "1"


def test_a_tiny_producer_limit_still_gets_a_letter_that_fits() -> None:
    letter = dl.make_dead_letter(
        record(b"y" * 5000), "oversize_event", "big", time_iso="t", worker="w",
        max_request_size=2000,
    )  # fmt: skip

    assert letter.reason == dl.REASON_TOO_LARGE
    assert dl.record_size(letter.key, letter.value, letter.headers) <= 2000


@pytest.mark.parametrize(
    ("key", "value", "headers"),
    [
        (None, b"", []),
        (b"k", b"v" * 300, [("h", b"")]),
        (b"k" * 70_000, b"v" * 2_000_000, [("dlq.reason", b"too_large")] * 12),
        (b"\x00" * 127, b"\x00" * 128, [("é" * 64, b"x" * 16_384)]),
    ],
)
def test_the_size_bound_is_never_below_the_producers_own_estimate(
    key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
) -> None:
    # kafka-python's figure is the one its send() checks against max_request_size.
    from kafka.record.default_records import DefaultRecordBatchBuilder

    theirs = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
    ours = dl.record_size(key, value, headers)
    assert theirs <= ours <= theirs + 64 + 10 * len(headers)
