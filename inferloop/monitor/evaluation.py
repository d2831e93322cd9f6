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

from inferloop.monitor.figures import Figures, live_figures, live_figures_many
from inferloop.monitor.intake import Intake, labelled_share
from inferloop.monitor.window import Entry, arrays, labels_of, scores_of
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
    live: dict[str, dict[str, Figures]] | None = None,
) -> dict[str, Any]:
    """The snapshot of every role's figures now; ``live`` given, each window's figures
    are put in it too, by window and role (the policy's input, not computed twice)."""
    window = intake.window
    windows = {"positives": window.by_positives(), "time": window.by_time(now_s)}
    live = {} if live is None else live
    figures = {
        name: _window_figures(entries, by_role, intake.spec.name, section)
        for name, entries in windows.items()
    }
    for name, by_role_figures in figures.items():
        live[name] = {role: f for role, f in by_role_figures.items() if f is not None}
    roles = {role: _role(role, model, figures, counts) for role, model in by_role.items()}
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


def _window_figures(
    entries: list[Entry],
    by_role: Mapping[str, ActiveModel],
    target: str,
    section: MonitorSettings,
) -> dict[str, Figures | None]:
    """Each role's figures over ``entries`` (None without an event it scored). The roles
    whose version scored every entry are evaluated together, on one draw of resamples."""
    out: dict[str, Figures | None] = {}
    together: dict[str, tuple[np.ndarray[Any, Any], float]] = {}
    for role, model in by_role.items():
        scores = scores_of(entries, model.version) if entries else None
        if scores is not None:
            together[role] = (scores, model.threshold)
            continue
        y, some = arrays(entries, model.version)
        out[role] = _figures(y, some, model.threshold, target, section)
    if together:
        out |= live_figures_many(
            labels_of(entries), together, target=target,
            block_size=section.bootstrap_block_size, n_boot=section.bootstrap_rounds, seed=0,
        )  # fmt: skip
    return {role: out[role] for role in by_role}


def _role(
    role: str,
    model: ActiveModel,
    figures: Mapping[str, Mapping[str, Figures | None]],
    counts: Mapping[str, int],
) -> dict[str, Any]:
    per_window = {}
    for name, by_role in figures.items():
        found = by_role[role]
        per_window[name] = (
            {"n": 0, "positives": 0} if found is None else _plain(dataclasses.asdict(found))
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
