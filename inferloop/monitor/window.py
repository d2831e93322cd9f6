"""The window of labelled events: compact entries, de-duplicated, bounded.

One entry per labelled event: a 64-bit hash of its id, its label, when the label
arrived, the label's delay, the version that served it (when the served sample has it)
and the score of every version watched when it was read. Packed, an entry takes
26 bytes plus 8 per version.

The window keeps the union of two windows: the last ``positives`` positives and the
negatives among them, and the labels that arrived in the last ``time_s``; never more
than ``max_events`` entries, whatever the rate. A label whose event id is in the window
already is a duplicate and counts once (per (event id, version): every watched version
scores an entry once).
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, NamedTuple

import numpy as np

from inferloop.domains.idhash import ID_HASH_SPACE

_HEAD = struct.Struct("<QBIdfB")
_SCORE = struct.Struct("<If")
# One struct per number of versions: the head and every score packed in one call.
_PACKERS: dict[int, struct.Struct] = {}


def _packer(versions: int) -> struct.Struct:
    packer = struct.Struct(_HEAD.format + _SCORE.format[1:] * versions)
    _PACKERS[versions] = packer
    return packer


def sampled(hashed: int, fraction: float) -> bool:
    """Whether the event with id hash ``hashed`` is in a sample of ``fraction`` of ids."""
    return hashed < fraction * ID_HASH_SPACE


class Entry(NamedTuple):
    """One labelled event of the window (a named tuple: the monitor makes one per
    labelled event, and a tuple is made in a third of a frozen dataclass's time)."""

    id_hash: int
    y: int
    served_version: int  # 0: not in the served sample (or its prediction not seen)
    labelled_at_s: float
    delay_s: float
    scores: dict[int, float]  # version -> score

    def pack(self) -> bytes:
        """The entry's stored bytes (the head, then each version and its score)."""
        n = len(self.scores)
        packer = _PACKERS.get(n) or _packer(n)
        return packer.pack(
            self.id_hash, self.y, self.served_version, self.labelled_at_s, self.delay_s, n,
            *chain.from_iterable(self.scores.items()),
        )  # fmt: skip

    @classmethod
    def unpack(cls, data: bytes) -> Entry:
        """The entry stored as ``data``."""
        hashed, y, served, labelled_at, delay, n = _HEAD.unpack_from(data)
        scores = {}
        for i in range(n):
            version, score = _SCORE.unpack_from(data, _HEAD.size + i * _SCORE.size)
            scores[version] = score
        return cls(hashed, y, served, labelled_at, delay, scores)


@dataclass(frozen=True)
class Bounds:
    """How much the window keeps."""

    positives: int
    time_s: float
    max_events: int


class Window:
    """The entries in arrival order, with the index that finds duplicates."""

    def __init__(self, bounds: Bounds, entries: Iterable[Entry] = ()) -> None:
        self.bounds = bounds
        self._entries: deque[Entry] = deque()
        self._ids: dict[int, Entry] = {}
        self.positives = 0
        for entry in entries:
            self.add(entry)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries)

    def __contains__(self, hashed: object) -> bool:
        return hashed in self._ids

    def get(self, hashed: int) -> Entry | None:
        """The entry of the event with id hash ``hashed``, if in the window."""
        return self._ids.get(hashed)

    def add(self, entry: Entry) -> bool:
        """Append ``entry``; False (and nothing added) when its id is there already."""
        if entry.id_hash in self._ids:
            return False
        self._entries.append(entry)
        self._ids[entry.id_hash] = entry
        self.positives += entry.y
        return True

    def trim(self, now_s: float) -> int:
        """Drop the oldest entries that neither window needs; how many were dropped."""
        dropped = 0
        cutoff = now_s - self.bounds.time_s
        while self._entries:
            head = self._entries[0]
            over = len(self._entries) > self.bounds.max_events
            # Outside the window by positives: enough positives come after the head.
            old_positive = self.positives - head.y >= self.bounds.positives
            if not over and not (old_positive and head.labelled_at_s < cutoff):
                break
            self._entries.popleft()
            del self._ids[head.id_hash]
            self.positives -= head.y
            dropped += 1
        return dropped

    def by_positives(self) -> list[Entry]:
        """The last ``positives`` positives and the negatives among them (all entries
        while there are fewer positives)."""
        need, seen = self.bounds.positives, 0
        start = 0
        for i in range(len(self._entries) - 1, -1, -1):
            seen += self._entries[i].y
            if seen == need:
                start = i
                break
        return list(self._entries)[start:]

    def by_time(self, now_s: float) -> list[Entry]:
        """The entries whose label arrived in the last ``time_s``."""
        cutoff = now_s - self.bounds.time_s
        return [e for e in self._entries if e.labelled_at_s >= cutoff]


def labels_of(entries: Sequence[Entry]) -> np.ndarray[Any, Any]:
    """The labels of ``entries``, in order."""
    return np.fromiter((e.y for e in entries), dtype=np.int8, count=len(entries))


def scores_of(entries: Sequence[Entry], version: int) -> np.ndarray[Any, Any] | None:
    """The scores ``version`` gave ``entries``, in order; None unless it scored them all."""
    try:
        return np.fromiter(
            (e.scores[version] for e in entries), dtype=np.float64, count=len(entries)
        )
    except KeyError:
        return None


def arrays(
    entries: Sequence[Entry], version: int
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """``(y, scores)`` of the entries that ``version`` scored."""
    scores = scores_of(entries, version)
    if scores is not None:  # the common case: it scored every entry
        return labels_of(entries), scores
    pairs = [(e.y, e.scores[version]) for e in entries if version in e.scores]
    if not pairs:
        return np.empty(0, dtype=np.int8), np.empty(0, dtype=np.float64)
    y, found = zip(*pairs, strict=True)
    return np.asarray(y, dtype=np.int8), np.asarray(found, dtype=np.float64)


def paired_arrays(
    entries: Iterable[Entry], new: int, old: int
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """``(y, new scores, old scores)`` of the entries both versions scored."""
    rows = [
        (e.y, e.scores[new], e.scores[old]) for e in entries if new in e.scores and old in e.scores
    ]
    if not rows:
        empty = np.empty(0, dtype=np.float64)
        return np.empty(0, dtype=np.int8), empty, empty
    y, a, b = zip(*rows, strict=True)
    return (
        np.asarray(y, dtype=np.int8),
        np.asarray(a, dtype=np.float64),
        np.asarray(b, dtype=np.float64),
    )
