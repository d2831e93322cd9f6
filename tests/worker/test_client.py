"""The Kafka client checksums record batches with the C ``crc32c`` package.

Without it kafka-python falls back to a pure-Python CRC-32C and every figure of the
worker drops four- to sevenfold; this fails loudly if the package is missing or unused.
"""

from __future__ import annotations

import crc32c
import kafka.record.util as record_util


def test_kafka_python_uses_the_c_crc32c() -> None:
    assert record_util._crc32c is crc32c.crc32c
    assert record_util.calc_crc32c(b"123456789") == 0xE3069283
