"""The demo's figures, computed from what the topics held (pure logic, no services)."""

from __future__ import annotations

import json

import pytest

from inferloop.demo.outcome import (
    DomainRecords,
    Predicted,
    parse_predictions,
    quality_by_version,
    status_counts,
    summarise,
)
from inferloop.demo.summary import markdown


def _p(event_id: str, version: int, score: float, at_ms: int, threshold: float = 0.5) -> Predicted:
    return Predicted(
        event_id, version, score, "spam" if score >= threshold else "ham", threshold, at_ms
    )


def test_a_replayed_event_with_neither_prediction_nor_dead_letter_is_lost() -> None:
    records = DomainRecords(
        replayed_ids=["a", "b", "c", "bad", "a"],  # "a" replayed twice is one event
        event_timestamps_ms={"a": 1_000, "b": 1_000, "c": 1_000, "bad": 1_000},
        predictions=[_p("a", 1, 0.9, 1_010), _p("b", 1, 0.1, 1_020), _p("a", 2, 0.8, 2_000)],
        dead_letter_ids=["bad"],
        dead_letter_reasons=["not_json"],
        labels={"a": 1, "b": 0},
    )
    outcome = summarise("emails", records)
    assert outcome.replayed == 4
    assert outcome.lost == 1  # "c"
    assert outcome.predictions == 3
    assert outcome.predicted_ids == 2
    assert outcome.duplicates == 1  # "a" scored again by v2
    assert outcome.dead_letters == {"not_json": 1}
    assert outcome.by_version == {1: 2, 2: 1}
    assert outcome.first_v2_ms == 2_000
    assert outcome.latency_ms["p50"] == pytest.approx(20.0)
    assert outcome.latency_ms["max"] == pytest.approx(1_000.0)


def test_quality_is_per_version_on_the_events_whose_label_came_back() -> None:
    predictions = [
        _p("s1", 1, 0.9, 0), _p("s2", 1, 0.4, 0), _p("h1", 1, 0.6, 0), _p("h2", 1, 0.1, 0),
        _p("s3", 2, 0.9, 0), _p("h3", 2, 0.2, 0), _p("unlabelled", 2, 0.9, 0),
    ]  # fmt: skip
    labels = {"s1": 1, "s2": 1, "h1": 0, "h2": 0, "s3": 1, "h3": 0}
    v1, v2 = quality_by_version(predictions, labels)
    assert (v1.version, v1.predictions, v1.labelled, v1.positives) == (1, 4, 4, 2)
    assert v1.precision == pytest.approx(0.5)  # s1 right, h1 wrong
    assert v1.recall == pytest.approx(0.5)  # s2 missed
    assert (v2.predictions, v2.labelled) == (3, 2)
    assert v2.f1 == pytest.approx(1.0)
    assert v2.auprc == pytest.approx(1.0)


def test_a_version_whose_labels_have_one_class_gets_no_quality_figures() -> None:
    (only,) = quality_by_version([_p("h1", 1, 0.2, 0), _p("h2", 1, 0.7, 0)], {"h1": 0, "h2": 0})
    assert only.labelled == 2
    assert only.precision is None
    assert only.auprc is None


def test_predictions_are_parsed_from_the_workers_records() -> None:
    body = {
        "event_id": "e1",
        "domain": "emails",
        "label": "spam",
        "score": 0.93,
        "threshold": 0.7,
        "model": {"name": "emails", "version": 3},
        "event_time": "2024-01-01T00:00:00Z",
        "predicted_at": "2024-01-01T00:00:01Z",
    }
    (p,) = parse_predictions([(json.dumps(body).encode(), 1_234)])
    assert p == Predicted("e1", 3, 0.93, "spam", 0.7, 1_234)


def test_the_summary_shows_not_comparable_apart_from_rejected() -> None:
    versions = [
        {"version": 1, "status": "archived", "trigger": "cli", "reason": "first model"},
        {"version": 2, "status": "champion", "trigger": "schedule", "reason": "a real win"},
        {"version": 3, "status": "rejected", "trigger": "schedule", "reason": "below the floor"},
        {"version": 4, "status": "not_comparable", "trigger": "cli", "reason": "overlaps"},
    ]
    assert status_counts(versions) == {
        "champion": 1,
        "archived": 1,
        "rejected": 1,
        "not_comparable": 1,
    }
    records = DomainRecords(
        replayed_ids=["a"],
        event_timestamps_ms={"a": 1_000},
        predictions=[_p("a", 2, 0.9, 1_010)],
        dead_letter_ids=[],
        dead_letter_reasons=[],
        labels={"a": 1},
    )
    text = markdown({"emails": summarise("emails", records)}, {"emails": versions})
    assert "Model versions: 1 champion, 1 archived, 1 rejected, 1 not_comparable." in text
    assert "| v4 | not_comparable | cli | overlaps |" in text
