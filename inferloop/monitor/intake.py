"""One batch of records into the changes of the monitor's state: pure, no Kafka or Redis.

Labels: each valid labelled event is scored by every watched version (one vectorised
call per version for the batch), taken into the window unless its id is there already
(a duplicate counts once), and counted per version and predicted class. Predictions:
counted per served version and predicted class (the denominators of the labelled share);
for the sampled ids the served version and score are kept, and compared with the
monitor's own score of that version on whichever of label and prediction comes second.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inferloop.domains import DomainSpec
from inferloop.domains.idhash import id_hash
from inferloop.domains.schemas import LabelledBatch
from inferloop.monitor.state import Changes, Served
from inferloop.monitor.window import Entry, Window, sampled
from inferloop.registry.serving import ActiveModel

# Served-versus-re-scored comparisons: a window entry keeps its scores as float32.
ABS_TOLERANCE = 1e-6


@dataclass
class Sample:
    """The served sample in memory, oldest first, bounded."""

    fraction: float
    max_size: int
    rtol: float
    items: dict[int, Served] = field(default_factory=dict)
    seq: int = 0

    def matches(self, served: float, rescored: float) -> bool:
        """Whether a re-scored value reproduces the served one."""
        return abs(served - rescored) <= ABS_TOLERANCE + self.rtol * abs(served)


def count_field(kind: str, version: int, label: str) -> str:
    """Counter name: ``labelled:<version>:<class>`` or ``predicted:<version>:<class>``."""
    return f"{kind}:{int(version)}:{label}"


@dataclass
class Taken:
    """The labelled events a batch took into the window: their positions in the batch,
    id hashes and event times."""

    positions: list[int] = field(default_factory=list)
    hashes: list[int] = field(default_factory=list)
    event_time_s: list[float] = field(default_factory=list)


@dataclass
class Intake:
    """The in-memory side of the state that batches change: the window and the sample."""

    spec: DomainSpec
    window: Window
    sample: Sample
    # Implicit negatives (``implicit.py``): N, None when off, and the greatest horizon
    # passed to the delayed reader (epoch s): an event due by then is, or will be, judged.
    implicit_after_s: float | None = None
    implicit_horizon_s: float = 0.0

    def take_labels(
        self, values: Sequence[bytes | None], models: Mapping[int, ActiveModel], changes: Changes
    ) -> Taken:
        """Score and take in one batch of label records (``changes`` and the window grow);
        the ids and event times of the labels taken."""
        batch = self.spec.parse_labelled(values)
        changes.counts["rejects"] += len(batch.rejects)
        if self.implicit_after_s is not None and len(batch):
            batch = self._drop_late(batch, self.implicit_after_s, changes)
        return self.take_batch(batch, models, changes)

    def _drop_late(self, batch: LabelledBatch, after_s: float, changes: Changes) -> LabelledBatch:
        """``batch`` without its late labels, counted per class as ``implicit_late:<class>``.

        Late: labelled more than N after the event (by definition, its event is an
        implicit negative), or read once the event fell due (event time + N) at or
        before the greatest horizon the delayed reader was polled with, whatever its
        stamp: that event is, or will be, judged without it. Either way its id is not
        kept, so the event has one outcome, the implicit negative."""
        due_s = batch.event_time_s + after_s
        late = (batch.labelled_at_s > due_s) | (due_s <= self.implicit_horizon_s)
        if not late.any():
            return batch
        for y in batch.y[late].tolist():
            changes.counts[f"implicit_late:{self.spec.label_names[y]}"] += 1
        return subset(self.spec, batch, np.flatnonzero(~late).tolist())

    def take_batch(
        self,
        batch: LabelledBatch,
        models: Mapping[int, ActiveModel],
        changes: Changes,
        counter: str = "labels",
    ) -> Taken:
        """Score and take in parsed labelled events (counted as ``counter``: ``labels``,
        or ``implicit_negatives``); the ids and event times taken."""
        if not len(batch):
            return Taken()
        # Per batch, not per event and version: each version scores the batch in one
        # call, and every event's {version: score} is made in one pass over the rows.
        scores = {v: np.asarray(m.scorer(batch.rows), dtype=np.float64) for v, m in models.items()}
        versions = list(scores)
        columns = [s.tolist() for s in scores.values()]
        per_event = (
            [dict(zip(versions, row, strict=True)) for row in zip(*columns, strict=True)]
            if columns
            else [{} for _ in batch.ids]
        )
        hashes = list(map(id_hash, batch.ids))
        served_of = self.sample.items.get
        labelled_at = batch.labelled_at_s.tolist()
        delays = np.maximum(batch.labelled_at_s - batch.event_time_s, 0.0).tolist()
        ys = batch.y.tolist()
        taken, add, appended = Taken(), self.window.add, changes.appended
        for i, hashed in enumerate(hashes):
            served = served_of(hashed)
            per_version = per_event[i]
            entry = Entry(hashed, ys[i], served.version if served else 0, labelled_at[i],
                          delays[i], per_version)  # fmt: skip
            if not add(entry):
                changes.counts["duplicates"] += 1
                continue
            appended.append(entry)
            taken.positions.append(i)
            taken.hashes.append(hashed)
            if served is not None:
                self._served_seen(hashed, served, per_version, changes)
        changes.counts[counter] += len(taken.positions)
        self._count(taken, scores, models, changes)
        taken.event_time_s = batch.event_time_s[taken.positions].tolist()
        return taken

    def _served_seen(
        self, hashed: int, served: Served, per_version: Mapping[int, float], changes: Changes
    ) -> None:
        del self.sample.items[hashed]
        changes.served_del.add(hashed)
        changes.served_put.pop(hashed, None)
        _check(served.version, served.score, per_version, self.sample, changes)

    def _count(
        self,
        taken: Taken,
        scores: Mapping[int, np.ndarray[Any, Any]],
        models: Mapping[int, ActiveModel],
        changes: Changes,
    ) -> None:
        """The taken events per version and predicted class, counted per batch."""
        n = len(taken.positions)
        if not n:
            return
        positions = np.asarray(taken.positions)
        negative, positive = self.spec.label_names
        for version, values in scores.items():
            flagged = int(np.count_nonzero(values[positions] >= models[version].threshold))
            if flagged:
                changes.counts[count_field("labelled", version, positive)] += flagged
            if n - flagged:
                changes.counts[count_field("labelled", version, negative)] += n - flagged

    def take_predictions(self, values: Sequence[bytes | None], changes: Changes) -> None:
        """Count one batch of prediction records and keep the sampled ones."""
        sample = self.sample
        for value in values:
            if value is None:
                continue
            prediction = _prediction(value)
            if prediction is None:
                # Skipped, not raised: its offset is stored with the batch, so a bad
                # record is not read again at every start.
                changes.counts["prediction_rejects"] += 1
                continue
            event_id, version, label, score = prediction
            changes.counts[count_field("predicted", version, label)] += 1
            if sample.fraction <= 0:
                continue
            hashed = id_hash(event_id)
            if not sampled(hashed, sample.fraction):
                continue
            entry = self.window.get(hashed)
            if entry is not None:  # the label came first
                _check(version, score, entry.scores, sample, changes)
                continue
            _keep(hashed, Served(version, score, sample.seq), sample, changes)


def _prediction(value: bytes) -> tuple[str, int, str, float] | None:
    """A prediction record's event id, version, label and score; None if it is not one."""
    try:
        record = json.loads(value)
        return (
            str(record["event_id"]),
            int(record["model"]["version"]),
            str(record["label"]),
            float(record["score"]),
        )
    except (ValueError, KeyError, TypeError, IndexError):
        return None


def _keep(hashed: int, served: Served, sample: Sample, changes: Changes) -> None:
    sample.seq += 1
    sample.items.pop(hashed, None)
    sample.items[hashed] = served
    changes.served_put[hashed] = served
    changes.served_del.discard(hashed)
    while len(sample.items) > sample.max_size:
        oldest = next(iter(sample.items))
        del sample.items[oldest]
        changes.served_put.pop(oldest, None)
        changes.served_del.add(oldest)


def _check(
    version: int, score: float, rescored: Mapping[int, float], sample: Sample, changes: Changes
) -> None:
    """Compare a served score with the monitor's own of the same version, if it has one."""
    if version not in rescored:
        changes.counts["served_unwatched"] += 1
        return
    changes.counts["served_checked"] += 1
    changes.counts[f"served:{version}"] += 1
    if not sample.matches(score, rescored[version]):
        changes.counts["served_mismatches"] += 1


def counts_by_version(counts: Mapping[str, int], kind: str) -> dict[int, dict[str, int]]:
    """``{version: {class: n}}`` of the ``kind`` counters (``labelled``, ``predicted``)."""
    out: dict[int, dict[str, int]] = {}
    prefix = kind + ":"
    for name, n in counts.items():
        if name.startswith(prefix):
            _, version, label = name.split(":", 2)
            out.setdefault(int(version), {})[label] = n
    return out


def labelled_share(counts: Mapping[str, int], version: int) -> dict[str, Any]:
    """Per class ``version`` predicted: labelled, predicted and their ratio (None when
    nothing of the class was predicted)."""
    labelled = counts_by_version(counts, "labelled").get(version, {})
    predicted = counts_by_version(counts, "predicted").get(version, {})
    out: dict[str, Any] = {}
    for label in sorted(set(labelled) | set(predicted)):
        n_l, n_p = labelled.get(label, 0), predicted.get(label, 0)
        out[label] = {"labelled": n_l, "predicted": n_p, "share": n_l / n_p if n_p else None}
    return out


def subset(spec: DomainSpec, batch: LabelledBatch, keep: Sequence[int]) -> LabelledBatch:
    """The events of ``batch`` at positions ``keep``."""
    idx = np.asarray(keep, dtype=np.int64)
    return LabelledBatch(
        ids=[batch.ids[i] for i in keep], event_time_s=batch.event_time_s[idx],
        labelled_at_s=batch.labelled_at_s[idx], y=batch.y[idx],
        rows=spec.take_rows(batch.rows, idx), extra_fields=batch.extra_fields,
    )  # fmt: skip
