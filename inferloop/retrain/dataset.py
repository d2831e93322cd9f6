"""From a snapshot to examples: de-duplication by event id and the split by event time.

A replayed or re-reported event is one example: for each event id the label with the
latest ``labelled_at`` wins (ties: the record later in the log). Examples are then
ordered by event time (ties by id), an order that does not depend on how partitions
were read, so the same offsets always give the same training set.

The holdout is the newest slice of the *mature* examples (event time at least the
label-maturity age before the snapshot): chargebacks arrive weeks late, so among the
newest events the ones labelled already are the quick, biased few. Training takes
every example older than the holdout's first event time; examples newer than that
but not mature yet wait for a later run. Equal event times fall on one side, and each
id is one example, so no id is on both sides.

With a training window of N labels the run's data set is the window and its holdout:
the holdout is the newest ``holdout_fraction`` of ``N / (1 - holdout_fraction)``
mature examples (fewer when fewer are mature), training the newest N before it. Cut
from the whole log instead, the holdout of a source that has just changed is the
newest 20 % of everything: in the shift case 1,417 of 7,081 examples, nearly all of
the new source's 1,505 labels, so the window fitted on the old source. A holdout that
small may hold too few of a class for the gate to decide (SpamAssassin's older half
ends on 520 ham in a row): with a window it reaches back until it holds
``min_per_class`` of each class, when the mature examples have that many.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from inferloop.domains import DomainSpec
from inferloop.retrain.columns import Columns
from inferloop.retrain.errors import NotEnoughDataError

IndexArray = np.ndarray[Any, np.dtype[np.int64]]


def deduplicate(columns: Columns, spec: DomainSpec) -> tuple[Columns, int]:
    """One example per event id (latest label wins), in event-time order; and the drops."""
    n = len(columns)
    if n == 0:
        return columns, 0
    # lexsort: the last key is the primary one.
    order = np.lexsort((columns.offset, columns.partition, columns.labelled_at_s, columns.ids))
    ids = columns.ids[order]
    last_of_id = np.ones(n, dtype=bool)
    last_of_id[:-1] = ids[1:] != ids[:-1]
    keep = order[last_of_id]
    keep = keep[np.lexsort((columns.ids[keep], columns.event_time_s[keep]))]
    return columns.take(keep, spec), n - len(keep)


@dataclass(frozen=True)
class Split:
    """Positions of the training and holdout examples in time-ordered examples."""

    train: IndexArray
    holdout: IndexArray
    cutoff_s: float  # first event time of the holdout
    mature_before_s: float  # events at or after this time are not mature yet
    immature: int  # examples left out of both sides for now

    def describe(self, examples: Columns) -> dict[str, Any]:
        """Sizes, positives and event-time ranges of both sides, for the lineage."""
        return {
            "train": _side(examples, self.train),
            "holdout": _side(examples, self.holdout),
            "cutoff_s": self.cutoff_s,
            "mature_before_s": self.mature_before_s,
            "immature": self.immature,
        }


def _side(examples: Columns, idx: IndexArray) -> dict[str, Any]:
    times = examples.event_time_s[idx]
    return {
        "examples": len(idx),
        "positives": int(np.count_nonzero(examples.y[idx])),
        "event_time_min_s": float(times.min()) if len(idx) else None,
        "event_time_max_s": float(times.max()) if len(idx) else None,
    }


def holdout_size(mature: int, holdout_fraction: float, window_labels: int | None) -> int:
    """How many of ``mature`` examples the holdout takes: ``holdout_fraction`` of them,
    or with a training window of ``window_labels``, of the window and its holdout."""
    pool = mature if window_labels is None else min(mature, window_labels / (1 - holdout_fraction))
    return max(1, math.ceil(holdout_fraction * pool))


def newest_holding(y: np.ndarray[Any, Any], min_per_class: int) -> int | None:
    """The size of the newest slice of ``y`` (time order) that holds ``min_per_class``
    of each class; None when all of ``y`` holds fewer."""
    newest_first = np.asarray(y)[::-1].astype(bool)
    sizes = []
    for hits in (np.cumsum(newest_first), np.cumsum(~newest_first)):
        if len(hits) == 0 or hits[-1] < min_per_class:
            return None
        sizes.append(int(np.searchsorted(hits, min_per_class)) + 1)
    return max(sizes)


def time_split(
    examples: Columns,
    *,
    holdout_fraction: float,
    as_of_s: float,
    maturity_s: float,
    window_labels: int | None = None,
    min_per_class: int = 0,
) -> Split:
    """The newest mature examples are the holdout (:func:`holdout_size`, with a window
    at least :func:`newest_holding` ``min_per_class``); older ones train, only the
    newest ``window_labels`` of them with a window.

    ``examples`` must be in event-time order (as :func:`deduplicate` returns them).
    """
    times = examples.event_time_s
    mature_before = as_of_s - maturity_s
    mature = np.flatnonzero(times <= mature_before)
    if len(mature) < 2:
        raise NotEnoughDataError(
            f"{len(mature)} of {len(times)} labelled examples are older than the "
            f"label-maturity age ({maturity_s:.0f} s): nothing to hold out"
        )
    n_holdout = holdout_size(len(mature), holdout_fraction, window_labels)
    if window_labels is not None and min_per_class > 0:
        holding = newest_holding(examples.y[mature], min_per_class)
        if holding is not None and holding < len(mature):
            n_holdout = max(n_holdout, holding)
    cutoff = float(times[mature[len(mature) - n_holdout]])
    holdout = mature[times[mature] >= cutoff]
    train = np.flatnonzero(times < cutoff)
    if window_labels is not None:
        train = train[-window_labels:]
    if len(train) == 0:
        raise NotEnoughDataError(
            f"all {len(mature)} mature examples share the holdout's event time; "
            "nothing older is left to train on"
        )
    return Split(
        train=train.astype(np.int64),
        holdout=holdout.astype(np.int64),
        cutoff_s=cutoff,
        mature_before_s=mature_before,
        immature=len(times) - len(mature),
    )


def new_label_count(
    end_offsets: dict[int, int], champion_lineage: dict[str, Any] | None, topic: str
) -> int | None:
    """Records that arrived in ``topic`` since the champion's data set (None: no champion).

    A champion trained on another topic (or without offsets) counts everything as new.
    """
    if champion_lineage is None:
        return None
    source = champion_lineage.get("source", {})
    partitions = source.get("partitions") if source.get("topic") == topic else None
    if not partitions:
        return sum(end_offsets.values())
    seen = {int(p): int(r["end"]) for p, r in partitions.items()}
    return sum(max(end - seen.get(p, 0), 0) for p, end in end_offsets.items())
