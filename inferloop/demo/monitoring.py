"""What the monitor measured during a demo run, as the demo saw it.

The monitor's status (``monitor status --json``) names the versions it watches now, by
role; a version rolled back is watched no more, so the demo keeps the last figures it saw
for each version. The rollback itself is read from the registry's history: the operator's
promotion, the monitor's rollback, and the evidence the monitor recorded with it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from inferloop.registry.entities import HistoryEntry

# The figures of a version the summary shows, from the monitor's time window (every
# labelled event since the monitor started, re-scored by that version).
FIGURES = ("precision", "recall", "f1", "auprc", "target_value")
WINDOW = "time"
ROLLBACK_PREFIX = "monitor Rollback: "


@dataclass
class MonitorLog:
    """The monitor's last figures per version, and its alarms and actions, of a domain."""

    versions: dict[int, dict[str, Any]] = field(default_factory=dict)
    alarms: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    last_evaluated_at: str | None = None

    def observe(self, status: Mapping[str, Any]) -> None:
        """Keep what a status snapshot says about each version it watches."""
        if status.get("evaluated_at") == self.last_evaluated_at:
            return
        self.last_evaluated_at = status.get("evaluated_at")
        for role, info in (status.get("roles") or {}).items():
            self.versions[int(info["version"])] = {
                "role": role,
                "evaluated_at": status.get("evaluated_at"),
                "threshold": info.get("threshold"),
                "window": (info.get("windows") or {}).get(WINDOW) or {},
            }
        _merge(self.alarms, status.get("alarms") or ())
        _merge(self.actions, status.get("actions") or ())

    def rows(self) -> list[dict[str, Any]]:
        """Per version: the role it had when last seen, labelled events, positives and the
        figures with their intervals, as the monitor computed them."""
        rows = []
        for version, seen in sorted(self.versions.items()):
            window = seen["window"]
            row: dict[str, Any] = {
                "version": version,
                "last_role": seen["role"],
                "labelled": window.get("n", 0),
                "positives": window.get("positives", 0),
                "target": window.get("target"),
            }
            for name in FIGURES:
                row[name] = _value(window.get(name))
            rows.append(row)
        return rows

    def drift_alarms(self) -> list[dict[str, Any]]:
        """The alarms whose kind names drift."""
        return [a for a in self.alarms if "drift" in str(a.get("kind", ""))]


@dataclass(frozen=True)
class Rollback:
    """The operator's promotion of a worse version and the monitor's rollback of it."""

    version: int
    to_version: int
    promoted_by: str
    rolled_back_by: str
    seconds: float
    labelled: int | None
    positives: int | None
    evidence: dict[str, Any]


def find_rollback(history: Sequence[HistoryEntry], version: int) -> Rollback | None:
    """The rollback of ``version`` after its last promotion, from the model's history
    (newest first, as ``Registry.history`` gives it); None if it was not rolled back."""
    ordered = sorted(history, key=lambda e: e.time)
    promoted = [
        e for e in ordered
        if e.action == "promote" and e.to_target is not None and e.to_target.version == version
    ]  # fmt: skip
    if not promoted:
        return None
    promotion = promoted[-1]
    for entry in ordered:
        if (
            entry.time >= promotion.time
            and entry.action == "rollback"
            and entry.from_target is not None
            and entry.from_target.version == version
        ):
            evidence = _evidence(entry.reason)
            return Rollback(
                version=version,
                to_version=entry.to_target.version if entry.to_target else -1,
                promoted_by=promotion.actor,
                rolled_back_by=entry.actor,
                seconds=(entry.time - promotion.time).total_seconds(),
                labelled=_int(evidence.get("n")),
                positives=_int(evidence.get("positives")),
                evidence=evidence,
            )
    return None


def _evidence(reason: str) -> dict[str, Any]:
    if not reason.startswith(ROLLBACK_PREFIX):
        return {}
    try:
        found = json.loads(reason.removeprefix(ROLLBACK_PREFIX))
    except json.JSONDecodeError:  # cut at the history's reason length
        return {}
    return found if isinstance(found, dict) else {}


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _value(figure: Any) -> dict[str, float | None] | None:
    if not isinstance(figure, Mapping) or "value" not in figure:
        return None
    return {k: figure.get(k) for k in ("value", "low", "high")}


def _merge(kept: list[dict[str, Any]], new: Sequence[dict[str, Any]]) -> None:
    """Add the entries of ``new`` not kept yet (the status repeats its recent ones)."""
    seen = {json.dumps(e, sort_keys=True, default=str) for e in kept}
    for entry in new:
        key = json.dumps(entry, sort_keys=True, default=str)
        if key not in seen:
            kept.append(dict(entry))
            seen.add(key)
