"""What the demo keeps of the monitor's status and finds of its rollback (pure logic)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from inferloop.demo.monitoring import MonitorLog, find_rollback
from inferloop.demo.summary import live_story, rollback_line
from inferloop.registry.entities import AliasTarget, HistoryEntry

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _status(at: str, roles: dict[str, tuple[int, float]], alarms: list[Any]) -> dict[str, Any]:
    return {
        "evaluated_at": at,
        "roles": {
            role: {
                "version": version,
                "threshold": 0.5,
                "windows": {
                    "positives": {"n": 1, "positives": 1},
                    "time": {
                        "n": 100, "positives": 20, "target": "ham_flagged",
                        "f1": {"value": f1, "low": f1 - 0.1, "high": f1 + 0.05},
                        "target_value": {"value": 0.01, "low": 0.0, "high": 0.02},
                    },
                },
            }
            for role, (version, f1) in roles.items()
        },
        "alarms": alarms,
        "actions": [],
    }  # fmt: skip


def test_the_log_keeps_each_versions_last_figures_after_the_monitor_stops_watching_it() -> None:
    log = MonitorLog()
    drift = {"action": "Alarm", "kind": "drift", "detail": {"detector": "score"}}
    log.observe(_status("t1", {"champion": (3, 0.4), "previous": (2, 0.9)}, [drift]))
    # The rollback: v3 is watched no more; the status repeats its recent alarms.
    loss = {"action": "Alarm", "kind": "probation-loss", "detail": {}}
    log.observe(_status("t2", {"champion": (2, 0.91)}, [drift, loss]))
    log.observe(_status("t2", {"champion": (2, 0.5)}, []))  # the same evaluation, read again
    rows = {row["version"]: row for row in log.rows()}
    assert rows[3]["last_role"] == "champion"
    assert rows[3]["f1"]["value"] == 0.4
    assert rows[2]["f1"]["value"] == 0.91
    assert rows[2]["labelled"] == 100
    assert rows[2]["positives"] == 20
    assert rows[2]["precision"] is None
    assert len(log.alarms) == 2
    assert log.drift_alarms() == [drift]


def _entry(
    minutes: float, action: str, to: int, came_from: int, actor: str, *, reason: str = ""
) -> HistoryEntry:
    return HistoryEntry(
        id=f"{minutes}", time=T0 + timedelta(minutes=minutes), action=action, alias="champion",
        from_target=AliasTarget(came_from, f"d{came_from}"), to_target=AliasTarget(to, f"d{to}"),
        version=to, actor=actor, user="u", reason=reason,
    )  # fmt: skip


def test_the_rollback_of_a_version_is_found_after_its_last_promotion_with_its_evidence() -> None:
    evidence = {"outcome": "loss", "n": 180, "positives": 23, "e_loss": 31.0}
    why = "monitor Rollback: " + json.dumps(evidence)
    history = [  # newest first, as Registry.history gives it
        _entry(3.5, "rollback", 2, 5, "monitor", reason=why),
        _entry(3.0, "promote", 5, 2, "ops"),
        _entry(2.0, "rollback", 2, 5, "ops", reason="an earlier one, by hand"),
        _entry(1.0, "promote", 5, 2, "ops"),
        _entry(0.5, "promote", 2, 1, "retrain"),
    ]
    found = find_rollback(history, 5)
    assert found is not None
    assert (found.version, found.to_version) == (5, 2)
    assert (found.promoted_by, found.rolled_back_by) == ("ops", "monitor")
    assert found.seconds == 30.0
    assert (found.labelled, found.positives) == (180, 23)
    line = rollback_line(live_story(None, found))
    assert "rolled back to v2 by the monitor 30.0 s after" in line
    assert "180 labelled events (23 positives)" in line
    assert find_rollback(history, 2) is None
    assert find_rollback(history[1:], 5) is None  # promoted again, not rolled back since
