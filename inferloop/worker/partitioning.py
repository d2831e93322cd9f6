"""Key partitioning for a whole batch at once: Kafka's murmur2, vectorised with numpy.

The producer's default partitioner hashes one key per ``send`` in pure Python. The
worker computes the partitions of a batch's keys in one go and passes each ``send`` its
partition: the same partition the Java client (and kafka-python's default partitioner)
would choose, ``(murmur2(key) & 0x7fffffff) % partitions``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

_SEED = np.uint32(0x9747B28C)
_M = np.uint32(0x5BD1E995)


def murmur2(keys: Sequence[bytes]) -> np.ndarray[Any, np.dtype[np.uint32]]:
    """Kafka's murmur2 hash of every key (as kafka-python's ``murmur2``), as uint32."""
    lengths = np.array(list(map(len, keys)), dtype=np.int64)
    if len(keys) and lengths.min() == lengths.max():
        return _murmur2_same_length(list(keys), int(lengths[0]))
    out = np.empty(len(keys), dtype=np.uint32)
    order = np.argsort(lengths, kind="stable")
    ordered = [keys[i] for i in order.tolist()]
    found, starts = np.unique(lengths[order], return_index=True)
    bounds = [*starts.tolist(), len(keys)]
    for n, length in enumerate(found.tolist()):
        start, stop = bounds[n], bounds[n + 1]
        out[order[start:stop]] = _murmur2_same_length(ordered[start:stop], length)
    return out


def _murmur2_same_length(keys: list[bytes], length: int) -> np.ndarray[Any, np.dtype[np.uint32]]:
    data = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), length)
    with np.errstate(over="ignore"):
        h = np.full(len(keys), _SEED ^ np.uint32(length & 0xFFFFFFFF), dtype=np.uint32)
        whole = length // 4
        if whole:
            words = np.ascontiguousarray(data[:, : whole * 4]).view("<u4")
            for i in range(whole):
                k = words[:, i] * _M
                k ^= k >> np.uint32(24)
                k *= _M
                h *= _M
                h ^= k
        tail = data[:, whole * 4 :].astype(np.uint32)
        extra = length % 4
        if extra >= 3:
            h ^= tail[:, 2] << np.uint32(16)
        if extra >= 2:
            h ^= tail[:, 1] << np.uint32(8)
        if extra >= 1:
            h ^= tail[:, 0]
            h *= _M
        h ^= h >> np.uint32(13)
        h *= _M
        h ^= h >> np.uint32(15)
    return h


def partitions_of(keys: Sequence[bytes], partitions: int) -> list[int]:
    """The partition of each key among ``partitions``, as the default partitioner picks."""
    if not keys:
        return []
    hashes = murmur2(keys) & np.uint32(0x7FFFFFFF)
    return (hashes % np.uint32(partitions)).tolist()  # type: ignore[no-any-return]
