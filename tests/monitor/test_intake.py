"""Prediction records into the monitor's counters: a record that cannot be read is
counted as rejected and skipped (it stopped the monitor at every start before)."""

from __future__ import annotations

import json

from inferloop.domains import get_domain
from inferloop.monitor.intake import Intake, Sample
from inferloop.monitor.state import Changes
from inferloop.monitor.window import Bounds, Window


def prediction(event_id: str, version: int = 3, label: str = "fraud") -> bytes:
    record = {"event_id": event_id, "model": {"version": version}, "label": label, "score": 0.7}
    return json.dumps(record).encode()


def test_unreadable_prediction_records_are_counted_and_skipped() -> None:
    intake = Intake(
        get_domain("transactions"),
        Window(Bounds(positives=10, time_s=60.0, max_events=100)),
        Sample(fraction=1.0, max_size=100, rtol=1e-4),
    )
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
