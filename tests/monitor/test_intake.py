"""Prediction records into the monitor's counters: a record that cannot be read is
counted as rejected and skipped (it stopped the monitor at every start before)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from inferloop.domains import get_domain
from inferloop.domains.idhash import id_hash
from inferloop.domains.schemas import LabelledBatch
from inferloop.monitor.intake import Intake, Sample
from inferloop.monitor.state import Changes
from inferloop.monitor.window import Bounds, Window
from inferloop.registry.serving import ActiveModel


def prediction(event_id: str, version: int = 3, label: str = "fraud") -> bytes:
    record = {"event_id": event_id, "model": {"version": version}, "label": label, "score": 0.7}
    return json.dumps(record).encode()


def transactions_intake(served_fraction: float) -> Intake:
    """An intake of transactions with a small window, keeping this share of served ids."""
    return Intake(
        get_domain("transactions"),
        Window(Bounds(positives=10, time_s=60.0, max_events=100)),
        Sample(fraction=served_fraction, max_size=100, rtol=1e-4),
    )


def test_unreadable_prediction_records_are_counted_and_skipped() -> None:
    intake = transactions_intake(served_fraction=1.0)
    changes = Changes()
    bad = [
        b"not json",
        b"[1, 2]",
        json.dumps({"event_id": "tx-9", "label": "fraud", "score": 0.1}).encode(),
        json.dumps({"event_id": "tx-9", "model": {"version": "v?"}, "label": "fraud"}).encode(),
    ]

    intake.take_predictions([prediction("tx-1"), *bad, None, prediction("tx-2")], changes)

    assert changes.counts["prediction_rejects"] == len(bad)
    assert changes.counts["predicted:3:fraud"] == 2
    assert len(changes.served_put) == 2


@dataclass(frozen=True)
class ColumnScorer:
    """Scores a row by one of its columns (a pure stand-in for a fitted model)."""

    column: int

    @property
    def name(self) -> str:
        return f"column {self.column}"

    def __call__(self, rows: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
        return np.asarray(rows[:, self.column], dtype=np.float64)


def model(version: int, column: int, threshold: float = 0.5) -> ActiveModel:
    spec = get_domain("transactions")
    return ActiveModel("transactions", version, "d", threshold, None, spec, ColumnScorer(column))


def batch(ids: list[str]) -> LabelledBatch:
    n = len(ids)
    rows = np.zeros((n, 29))
    rows[:, 0] = np.linspace(0.0, 1.0, n)
    rows[:, 1] = 1.0 - rows[:, 0]
    return LabelledBatch(
        ids=ids, event_time_s=np.full(n, 100.0), labelled_at_s=np.full(n, 103.5),
        y=np.array([i % 2 for i in range(n)], dtype=np.int8), rows=rows,
    )  # fmt: skip


def test_every_taken_label_has_each_versions_score_and_counts() -> None:
    intake = transactions_intake(served_fraction=0.0)
    changes = Changes()
    models = {4: model(4, 0), 2: model(2, 1, threshold=0.9)}
    ids = ["tx-a", "tx-b", "tx-a", "tx-c", "tx-d"]  # tx-a twice: counted once

    taken = intake.take_batch(batch(ids), models, changes)

    assert taken.positions == [0, 1, 3, 4]
    assert taken.hashes == [id_hash(i) for i in ("tx-a", "tx-b", "tx-c", "tx-d")]
    assert taken.event_time_s == [100.0] * 4
    assert [e.scores for e in changes.appended] == [
        {4: 0.0, 2: 1.0}, {4: 0.25, 2: 0.75}, {4: 0.75, 2: 0.25}, {4: 1.0, 2: 0.0}
    ]  # fmt: skip
    assert [(e.y, e.delay_s, e.served_version) for e in changes.appended] == [
        (0, 3.5, 0), (1, 3.5, 0), (1, 3.5, 0), (0, 3.5, 0)
    ]  # fmt: skip
    assert changes.counts["duplicates"] == 1
    assert changes.counts["labels"] == 4
    # v4 flags scores >= 0.5 (two of the four), v2 scores >= 0.9 (one).
    assert changes.counts["labelled:4:fraud"] == 2
    assert changes.counts["labelled:4:legit"] == 2
    assert changes.counts["labelled:2:fraud"] == 1
    assert changes.counts["labelled:2:legit"] == 3


def test_labels_taken_with_no_version_watched_have_no_scores() -> None:
    intake = transactions_intake(served_fraction=0.0)
    changes = Changes()
    taken = intake.take_batch(batch(["tx-1", "tx-2"]), {}, changes)
    assert taken.positions == [0, 1]
    assert [e.scores for e in changes.appended] == [{}, {}]
