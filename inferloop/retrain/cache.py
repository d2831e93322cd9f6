"""The local columnar snapshot cache: parsed labelled examples by partition offset range.

Parsing, not fetching, is what reading a million labelled events costs, so each run
keeps what it parsed as segments, one ``.npz`` file per topic partition and offset
range ``[start, end)``. The next run loads the segments that chain from its start
offset and reads only the new range from Kafka. The lineage stays exact (offsets are
the identity either way), a lost or damaged cache only costs time, and a segment is
used only after Kafka showed that the last record it covers is still there with the
same key (a topic deleted and made again starts at offset 0 with other data).

Files are plain numpy arrays, loaded with ``allow_pickle=False``: strings (the emails'
text) are stored as one UTF-8 blob and an offsets array, never pickled.
"""

from __future__ import annotations

import json
import logging
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inferloop.domains import DomainSpec
from inferloop.retrain.columns import Columns, concat

log = logging.getLogger(__name__)

FORMAT = 1
# More segments than this in a partition are merged into one at the next store.
MAX_SEGMENTS = 8
_SEGMENT = re.compile(r"^(\d{20})-(\d{20})\.npz$")


@dataclass(frozen=True)
class RecordMark:
    """The last record of a range: its offset and key, checked against Kafka later."""

    offset: int
    key: bytes | None


@dataclass(frozen=True)
class Segment:
    """One cached offset range of one partition."""

    path: Path
    start: int
    end: int


@dataclass(frozen=True)
class Piece:
    """Parsed examples of one offset range ``[start, end)``, to be kept as a segment."""

    start: int
    end: int
    columns: Columns
    mark: RecordMark | None  # the range's last record
    rejects: dict[str, int]


@dataclass
class Cached:
    """What the cache holds for the start of a requested range."""

    columns: Columns
    end: int  # the first offset not covered
    mark: RecordMark | None  # the last record covered, to check against Kafka
    rejects: dict[str, int] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)


class SnapshotCache:
    """Segments under ``root/<domain>-s<schema>/<topic>/p<partition>/``."""

    def __init__(self, root: Path, spec: DomainSpec) -> None:
        self.spec = spec
        self.base = root / f"{spec.name}-s{spec.schema_version}"

    def _dir(self, topic: str, partition: int) -> Path:
        return self.base / topic / f"p{partition}"

    def segments(self, topic: str, partition: int) -> list[Segment]:
        """The partition's segments, by start offset."""
        folder = self._dir(topic, partition)
        if not folder.is_dir():
            return []
        found = []
        for path in folder.iterdir():
            match = _SEGMENT.match(path.name)
            if match:
                found.append(Segment(path, int(match.group(1)), int(match.group(2))))
        return sorted(found, key=lambda s: (s.start, s.end))

    def load(self, topic: str, partition: int, start: int, end: int) -> Cached | None:
        """The cached examples of ``[start, c)`` for the largest chained ``c <= end``."""
        position, parts, used = start, [], []
        mark: RecordMark | None = None
        rejects: dict[str, int] = {}
        for segment in self.segments(topic, partition):
            if not (segment.start <= position < segment.end <= end):
                continue
            loaded = self._read(segment)
            if loaded is None:
                continue
            columns, seg_mark, seg_rejects = loaded
            if segment.start < position:
                columns = columns.take(np.flatnonzero(columns.offset >= position), self.spec)
            parts.append(columns)
            used.append(segment)
            mark = seg_mark or mark
            for reason, count in seg_rejects.items():
                rejects[reason] = rejects.get(reason, 0) + count
            position = segment.end
        if not used:
            return None
        return Cached(concat(parts, self.spec), position, mark, rejects, used)

    def store(self, topic: str, partition: int, piece: Piece) -> None:
        """Keep ``piece`` as a segment; merge the partition's segments when there are many."""
        if piece.end <= piece.start:
            return
        folder = self._dir(topic, partition)
        folder.mkdir(parents=True, exist_ok=True)
        self._write(folder / _name(piece.start, piece.end), piece)
        segments = self.segments(topic, partition)
        if len(segments) > MAX_SEGMENTS:
            self._merge(topic, partition, segments)

    def drop(self, topic: str, partition: int) -> None:
        """Forget every segment of a partition (its data changed under the cache)."""
        for segment in self.segments(topic, partition):
            segment.path.unlink(missing_ok=True)

    def _merge(self, topic: str, partition: int, segments: list[Segment]) -> None:
        first, last = segments[0].start, max(s.end for s in segments)
        cached = self.load(topic, partition, first, last)
        if cached is None or cached.end != last:
            return
        path = self._dir(topic, partition) / _name(first, last)
        self._write(path, Piece(first, last, cached.columns, cached.mark, cached.rejects))
        for segment in cached.segments:
            if segment.path != path:
                segment.path.unlink(missing_ok=True)
        log.info("snapshot cache %s p%d: merged %d segments", topic, partition, len(segments))

    def _write(self, path: Path, piece: Piece) -> None:
        mark, columns = piece.mark, piece.columns
        meta = {
            "format": FORMAT,
            "start": piece.start,
            "end": piece.end,
            "mark": None if mark is None else {"offset": mark.offset, "key": _hex(mark.key)},
            "rejects": piece.rejects,
        }
        arrays: dict[str, np.ndarray[Any, Any]] = {
            "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            "partition": columns.partition,
            "offset": columns.offset,
            "ids": columns.ids,
            "event_time_s": columns.event_time_s,
            "labelled_at_s": columns.labelled_at_s,
            "y": columns.y,
        }
        arrays |= encode_rows(columns.rows)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        save_arrays(tmp, arrays)
        os.replace(tmp, path)

    def _read(self, segment: Segment) -> tuple[Columns, RecordMark | None, dict[str, int]] | None:
        try:
            with np.load(segment.path, allow_pickle=False) as data:
                meta = json.loads(bytes(data["meta"]).decode())
                if meta.get("format") != FORMAT:
                    raise ValueError(f"format {meta.get('format')}")
                columns = Columns(
                    partition=data["partition"],
                    offset=data["offset"],
                    ids=data["ids"],
                    event_time_s=data["event_time_s"],
                    labelled_at_s=data["labelled_at_s"],
                    y=data["y"],
                    rows=decode_rows(data),
                )
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
            # A damaged segment costs a re-read from Kafka, nothing more.
            log.warning("snapshot cache: dropping unreadable %s: %s", segment.path, exc)
            segment.path.unlink(missing_ok=True)
            return None
        raw_mark = meta.get("mark")
        mark = None if raw_mark is None else RecordMark(raw_mark["offset"], _unhex(raw_mark["key"]))
        return columns, mark, dict(meta.get("rejects", {}))


def save_arrays(path: Path, arrays: dict[str, np.ndarray[Any, Any]]) -> None:
    """Write ``arrays`` as an ``.npz`` file (what ``np.load`` reads), refusing pickles.

    ``np.savez`` would pickle an object array silently, and the cache could then not
    load its own segment (it loads with ``allow_pickle=False``).
    """
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def encode_rows(rows: np.ndarray[Any, Any]) -> dict[str, np.ndarray[Any, Any]]:
    """Arrays that store ``rows`` without pickling (strings as a UTF-8 blob + offsets)."""
    if rows.dtype != object:
        return {"rows": rows}
    flat = rows.reshape(-1)
    encoded = [str(v).encode("utf-8", "surrogatepass") for v in flat]
    lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
    return {
        "rows_blob": np.frombuffer(b"".join(encoded), dtype=np.uint8),
        "rows_ends": np.cumsum(lengths),
        "rows_shape": np.asarray(rows.shape, dtype=np.int64),
    }


def decode_rows(data: Any) -> np.ndarray[Any, Any]:
    """The rows :func:`encode_rows` stored."""
    if "rows" in data:
        return np.asarray(data["rows"])
    blob = bytes(data["rows_blob"])
    ends = data["rows_ends"].tolist()
    shape = tuple(int(n) for n in data["rows_shape"])
    out = np.empty(len(ends), dtype=object)
    begin = 0
    for i, stop in enumerate(ends):
        out[i] = blob[begin:stop].decode("utf-8", "surrogatepass")
        begin = stop
    return out.reshape(shape)


def _name(start: int, end: int) -> str:
    return f"{start:020d}-{end:020d}.npz"


def _hex(key: bytes | None) -> str | None:
    return None if key is None else key.hex()


def _unhex(text: str | None) -> bytes | None:
    return None if text is None else bytes.fromhex(text)
