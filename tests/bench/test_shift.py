"""The shift case's summary: milestones read from the monitor's statuses and the
registry's history, placed on the stream's timeline, and its Markdown."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.shift import (
    Sample,
    Timeline,
    champions,
    first_action,
    first_alarm,
    markdown,
    milestones,
    offline_figures,
    promotions,
)
from bench.summary import write_summary
from inferloop.registry.entities import AliasTarget, HistoryEntry

START = datetime(2026, 12, 7, 20, 0, tzinfo=UTC).timestamp()


def _at(t_s: float) -> datetime:
    return datetime.fromtimestamp(START + t_s, UTC)


def _status(t_s: float, labels: int, alarms: list[Any] = (), actions: list[Any] = ()) -> Any:  # type: ignore[assignment]
    return {"evaluated_at": _at(t_s).isoformat(), "checks": {"labels": labels},
            "alarms": list(alarms), "actions": list(actions)}  # fmt: skip


def _move(
    t_s: float, version: int, action: str = "promote", alias: str = "champion"
) -> HistoryEntry:
    return HistoryEntry(
        id=f"{t_s}-0", time=_at(t_s), action=action, alias=alias,
        from_target=AliasTarget(version - 1, "d"), to_target=AliasTarget(version, "d"),
        version=version, actor="retrain", user="u", reason=f"gate: v{version} wins",
    )  # fmt: skip


def _timeline() -> Timeline:
    timeline = Timeline(started_at=START)
    for i in range(0, 200, 10):
        # 12 events a second; labels 20 s behind; the monitor a few seconds later still.
        timeline.samples.append(
            Sample(float(i), 12 * i, max(0, 12 * (i - 20)), max(0, 12 * (i - 25)))
        )
    return timeline


FLOOR = {"action": "Alarm", "kind": "floor", "detail": {"n": 150}}
TRIGGER = {"action": "TriggerRetrain", "outcome": "sent", "reason": "floor"}


def test_the_first_alarm_and_trigger_are_the_first_statuses_holding_them() -> None:
    statuses = [
        _status(40, 100),
        _status(45, 160, alarms=[{"kind": "drift"}]),
        _status(50, 220, alarms=[FLOOR], actions=[TRIGGER]),
        _status(55, 280, alarms=[FLOOR, FLOOR], actions=[TRIGGER]),
    ]
    alarm = first_alarm(statuses, "floor")
    assert alarm is not None
    assert alarm["labelled"] == 220
    assert first_alarm(statuses[:2], "floor") is None
    trigger = first_action(statuses, "TriggerRetrain")
    assert trigger is not None
    assert trigger["at"] == _at(50).isoformat()


def test_milestones_place_each_on_the_timeline_with_the_monitors_own_count() -> None:
    statuses = [_status(40, 100), _status(52, 230, alarms=[FLOOR], actions=[TRIGGER])]
    moves = promotions([_move(130, 3), _move(95, 2), _move(10, 1, alias="challenger")], _at(0))
    runs = [{"version": 2, "created_at": START + 93, "trigger": "monitor", "decision": "promote"}]

    found = milestones(_timeline(), statuses, moves, runs)

    # The alarm's labelled count is the monitor's at that status, not the sample's.
    assert found["alarm"] == {"t_s": 52.0, "events": 600, "labelled": 230, "labels_sent": 360}
    assert [m["version"] for m in found["moves"]] == [2, 3]  # oldest first, champion only
    assert found["moves"][0] | {"reason": ""} == {
        "t_s": 95.0, "events": 1080, "labelled": 780, "labels_sent": 840, "action": "promote",
        "version": 2, "actor": "retrain", "reason": "",
    }  # fmt: skip
    assert found["runs"][0]["t_s"] == 93.0
    assert found["runs"][0]["labelled"] == 780
    assert champions(1, moves) == [1, 2, 3]


def test_nothing_reached_is_said_so() -> None:
    found = milestones(_timeline(), [_status(40, 100)], [], [])
    assert found["alarm"] is None
    assert found["trigger"] is None
    assert found["moves"] == []


def test_offline_figures_at_the_threshold_and_at_one_percent_ham_flagged() -> None:
    y = np.array([0] * 200 + [1] * 20)
    scores = np.r_[np.linspace(0.0, 0.6, 200), np.linspace(0.5, 1.0, 20)]
    figures = offline_figures(y, scores, 0.55)
    assert figures["ham_flagged"] == round(np.mean(scores[:200] >= 0.55), 4)
    assert figures["f1_at_1pct"] >= figures["f1"] - 1e-9 or figures["ham_flagged"] <= 0.01


def test_the_summary_files(tmp_path: Path) -> None:
    shift = {
        "variant": "hourly", "schedule": "1h", "rate_per_s": 12.0, "label_delay_s": 20.0,
        "streamed": 3023, "v1": 1, "stream_s": 252.0,
        "milestones": milestones(_timeline(), [], [_move(95, 2)], []),
        "offline": {"newer_half": 3023, "newer_half_spam": 500, "models": {
            "v1": {"threshold": 0.5, "f1": 0.58, "ham_flagged": 0.49, "recall": 0.9,
                   "auprc": 0.7, "f1_at_1pct": 0.3}}},
        "figures": {"samples": [{"t_s": float(i)} for i in range(5000)]},
    }  # fmt: skip
    results = {
        "run": "x", "command": "python -m bench.shift --variant hourly",
        "source": {"commit": "abc", "dirty": False},
        "machine": {"time": "2026-12-07T20:00:00+00:00", "cores": 2},
        "load_start": [9.0, 9.0, 9.0], "load_end": [10.0, 10.0, 10.0],
        "sections": {"shift": shift},
    }  # fmt: skip
    write_summary(tmp_path, results, markdown)
    text = (tmp_path / "results.md").read_text()
    assert "| live-quality alarm (floor) | not reached |" in text
    assert "| promote to v2 | 95 | 1080 | 780 |" in text
    assert "| v1 | 0.5 | 0.58 | 0.49 | 0.9 | 0.7 | 0.3 |" in text
    summary = json.loads((tmp_path / "results.json").read_text())
    assert "figures" not in summary["sections"]["shift"]
    assert (tmp_path / "results.json").stat().st_size < 16_000
