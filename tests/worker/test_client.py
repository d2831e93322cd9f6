"""The Kafka client checksums record batches with the C ``crc32c`` package.

Without it kafka-python falls back to a pure-Python CRC-32C and every figure of the
worker drops four- to sevenfold; this fails loudly if the package is missing or unused.
The check lives in the adapter of kafka-python's internals (it reads a private name);
where that name is gone it times one checksum instead.
"""

from __future__ import annotations

import time

import kafka.record.util as record_util
import pytest
from kafka.record._crc32c import crc as crc32c_py

from inferloop.kafka_internals import crc32c_in_use


def test_kafka_python_uses_the_c_crc32c() -> None:
    assert crc32c_in_use()
    assert record_util.calc_crc32c(b"123456789") == 0xE3069283


def test_the_pure_python_checksum_is_told_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(record_util, "_crc32c", crc32c_py)
    assert not crc32c_in_use()


def test_without_the_private_name_a_slow_checksum_is_told_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(record_util, "_crc32c")

    def slow(data: bytes) -> int:
        time.sleep(0.05)
        return 0

    monkeypatch.setattr(record_util, "calc_crc32c", slow)
    assert not crc32c_in_use()
    monkeypatch.setattr(record_util, "calc_crc32c", lambda data: 0)
    assert crc32c_in_use()
