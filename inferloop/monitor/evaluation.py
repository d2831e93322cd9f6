"""An evaluation of every watched version over the two windows: the status snapshot.

The snapshot is what ``inferloop monitor status`` prints, what the console reads from
Redis and what the metrics are set from: per role, the version, each window's figures
with their intervals, the labelled share per predicted class and the served checks;
for the domain, the windows' sizes, the label delay and the alarms.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

from inferloop.monitor.figures import Figures, live_figures
from inferloop.monitor.intake import Intake, labelled_share
from inferloop.monitor.window import Entry, arrays
from inferloop.registry.serving import ActiveModel
from inferloop.settings import MonitorSettings

WINDOWS = ("positives", "time")


def evaluate(
    intake: Intake,
    by_role: Mapping[str, ActiveModel],
    counts: Mapping[str, int],
    section: MonitorSettings,
    now_s: float,
    *,
    live: dict[str, Figures] | None = None,
) -> dict[str, Any]:
    """The snapshot of every role's figures now; ``live`` given, each role's figures
    over the positives window are put in it too (the policy's input, not computed twice)."""
    window = intake.window
    windows = {"positives": window.by_positives(), "time": window.by_time(now_s)}
    live = {} if live is None else live
    roles = {
        role: _role(intake, role, model, windows, counts, section=section, live=live)
        for role, model in by_role.items()
    }
    return {
        "domain": intake.spec.name,
        "evaluated_at": datetime.fromtimestamp(now_s, UTC).isoformat(),
        "window": {
            "stored_events": len(window),
            "stored_positives": window.positives,
            "positives_target": section.window_positives,
            "time_s": section.window_time_s,
            **{f"{name}_events": len(entries) for name, entries in windows.items()},
            **{f"{name}_positives": sum(e.y for e in entries) for name, entries in windows.items()},
        },
        "label_delay_s": _delays(list(window)),
        "checks": {
            name: int(counts.get(name, 0))
            for name in ("labels", "duplicates", "rejects", "served_checked", "served_mismatches")
        },
        "roles": roles,
        "alarms": [],
    }


def _role(
    intake: Intake,
    role: str,
    model: ActiveModel,
    windows: Mapping[str, list[Entry]],
    counts: Mapping[str, int],
    *,
    section: MonitorSettings,
    live: dict[str, Figures],
) -> dict[str, Any]:
    per_window = {}
    for name, entries in windows.items():
        y, scores = arrays(entries, model.version)
        figures = _figures(y, scores, model.threshold, intake.spec.name, section)
        if figures is not None and name == "positives":
            live[role] = figures
        per_window[name] = (
            {"n": 0, "positives": 0} if figures is None else _plain(dataclasses.asdict(figures))
        )
    return {
        "version": model.version,
        "threshold": model.threshold,
        "windows": per_window,
        "labelled_share": labelled_share(counts, model.version),
        "served_checked": int(counts.get(f"served:{model.version}", 0)),
    }


def _figures(
    y: np.ndarray[Any, Any],
    scores: np.ndarray[Any, Any],
    threshold: float,
    target: str,
    section: MonitorSettings,
) -> Figures | None:
    """The live figures with their bootstrap intervals; None without an event."""
    if y.size == 0:
        return None
    return live_figures(
        y, scores, threshold, target=target, block_size=section.bootstrap_block_size,
        n_boot=section.bootstrap_rounds, seed=0,
    )  # fmt: skip


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _delays(entries: list[Entry]) -> dict[str, float | None]:
    if not entries:
        return {"p50": None, "p90": None, "max": None}
    delays = np.fromiter((e.delay_s for e in entries), dtype=np.float64, count=len(entries))
    p50, p90 = np.quantile(delays, [0.5, 0.9])
    return {"p50": float(p50), "p90": float(p90), "max": float(delays.max())}
