"""The batch partitioner picks exactly the partition Kafka's default partitioner picks."""

from __future__ import annotations

import numpy as np
from kafka.partitioner.default import murmur2 as reference

from inferloop.worker.partitioning import murmur2, partitions_of


def test_murmur2_matches_the_clients_for_every_length_and_byte() -> None:
    rng = np.random.default_rng(7)
    keys = [
        bytes(rng.integers(0, 256, size=n, dtype=np.uint8)) for n in range(40) for _ in range(5)
    ]
    keys += [b"", b"tx-1", "tx-é-ü".encode(), b"x" * 300]

    assert murmur2(keys).tolist() == [reference(k) for k in keys]


def test_partitions_follow_the_default_partitioner() -> None:
    keys = [f"tx-{i}".encode() for i in range(2000)]
    expected = [(reference(k) & 0x7FFFFFFF) % 7 for k in keys]

    assert partitions_of(keys, 7) == expected
    assert partitions_of([], 4) == []
