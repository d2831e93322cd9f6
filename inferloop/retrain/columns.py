"""Labelled examples as aligned columns: the shape every step of the job passes on.

One :class:`Columns` holds parsed labelled examples with where they came from (topic
partition and offset). It is what the snapshot reader builds from each batch, what the
local cache stores, and what de-duplication and the split work on. The rows stay the
domain's own array (``spec.to_rows``/``spec.parse_labelled`` build them); they are
only sliced and concatenated here, with ``numpy`` indexing along the first axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from inferloop.domains import DomainSpec
from inferloop.domains.schemas import LabelledBatch

IntArray = np.ndarray[Any, np.dtype[np.int64]]
FloatArray = np.ndarray[Any, np.dtype[np.float64]]


@dataclass(frozen=True)
class Columns:
    """Parsed labelled examples, one entry per example in every array."""

    partition: np.ndarray[Any, np.dtype[np.int32]]
    offset: IntArray
    ids: np.ndarray[Any, Any]  # bytes ("S" dtype): sorting and comparing stay in C
    event_time_s: FloatArray
    labelled_at_s: FloatArray
    y: np.ndarray[Any, np.dtype[np.int8]]
    rows: np.ndarray[Any, Any]

    def __len__(self) -> int:
        return len(self.offset)

    def take(self, idx: np.ndarray[Any, Any], spec: DomainSpec) -> Columns:
        """The examples at positions ``idx`` (integer or boolean index)."""
        return Columns(
            partition=self.partition[idx],
            offset=self.offset[idx],
            ids=self.ids[idx],
            event_time_s=self.event_time_s[idx],
            labelled_at_s=self.labelled_at_s[idx],
            y=self.y[idx],
            rows=spec.take_rows(self.rows, idx),
        )

    @property
    def positives(self) -> int:
        """How many examples carry the positive label."""
        return int(np.count_nonzero(self.y))


def encode_ids(ids: Sequence[str]) -> np.ndarray[Any, Any]:
    """Event ids as a fixed-width bytes array (UTF-8)."""
    if not ids:
        return np.empty(0, dtype="S1")
    return np.array([i.encode() for i in ids], dtype=np.bytes_)


def from_batch(
    batch: LabelledBatch, partition: int, offsets: Sequence[int], values_count: int
) -> Columns:
    """The valid examples of a parsed batch, with the offsets of the records they came from.

    ``offsets`` are those of all ``values_count`` records handed to ``parse_labelled``;
    the rejected indices are dropped so each example keeps its own record's offset.
    """
    keep = np.ones(values_count, dtype=bool)
    if batch.rejects:
        keep[[r.index for r in batch.rejects]] = False
    kept = np.asarray(offsets, dtype=np.int64)[keep]
    if len(kept) != len(batch.ids):
        raise ValueError(f"{len(batch.ids)} parsed examples but {len(kept)} records kept")
    return Columns(
        partition=np.full(len(kept), partition, dtype=np.int32),
        offset=kept,
        ids=encode_ids(batch.ids),
        event_time_s=np.asarray(batch.event_time_s, dtype=np.float64),
        labelled_at_s=np.asarray(batch.labelled_at_s, dtype=np.float64),
        y=np.asarray(batch.y, dtype=np.int8),
        rows=batch.rows,
    )


def concat(parts: Sequence[Columns], spec: DomainSpec) -> Columns:
    """Parts one after the other (none: no examples, with the domain's empty rows)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return Columns(
            partition=np.empty(0, dtype=np.int32),
            offset=np.empty(0, dtype=np.int64),
            ids=np.empty(0, dtype="S1"),
            event_time_s=np.empty(0, dtype=np.float64),
            labelled_at_s=np.empty(0, dtype=np.float64),
            y=np.empty(0, dtype=np.int8),
            rows=spec.to_rows([]),
        )
    if len(parts) == 1:
        return parts[0]
    return Columns(
        partition=np.concatenate([p.partition for p in parts]),
        offset=np.concatenate([p.offset for p in parts]),
        ids=np.concatenate([p.ids for p in parts]),
        event_time_s=np.concatenate([p.event_time_s for p in parts]),
        labelled_at_s=np.concatenate([p.labelled_at_s for p in parts]),
        y=np.concatenate([p.y for p in parts]),
        rows=spec.concat_rows([p.rows for p in parts]),
    )
