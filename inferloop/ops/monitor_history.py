"""The monitor's history as it is stored and read back: each version's live figures over
time, the drift alarms with their time, and the policy's other alarms and its actions
(:class:`KeptAction`: floor and probation alarms, rollbacks, challenger moves, retrain
triggers) with their time and the figure that raised them.

The monitor writes both (``monitor/state.py``); the console reads them. Both import the
format from here, so the reader cannot drift from the writer.

Bounds (the state never grows with the running time):

- history: one point per watched version at most every :data:`HISTORY_EVERY_S`, at most
  :data:`HISTORY_POINTS` per version (a day at that rate), none older than
  :data:`HISTORY_MAX_AGE_S`; a version no longer watched loses its list
  :data:`HISTORY_MAX_AGE_S` after its last point (the key's TTL). A full list (two
  windows a point) measured 1.56 MB in Redis, 542 bytes a point
  (``python -m bench.console_views``, docs/results/20261207T195244Z-console-views).
- alarms: the last :data:`ALARMS_KEPT` of a domain; actions: the last
  :data:`ACTIONS_KEPT` (a list apart, so a burst of drift alarms never pushes a rollback
  out).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from inferloop.keys import Keys

HISTORY_EVERY_S = 30.0
HISTORY_POINTS = 2880
HISTORY_MAX_AGE_S = 7 * 24 * 3600.0
ALARMS_KEPT = 200
ACTIONS_KEPT = 200
# The figures of a window kept per point, each as [value, low, high].
HISTORY_FIGURES = ("precision", "recall", "f1", "target_value", "auprc")


@dataclass(frozen=True)
class HistoryPoint:
    """One version's live figures at one evaluation."""

    at_s: float  # the evaluation's time, seconds since the epoch
    role: str
    target: str  # the target figure's name (ham_flagged, fraud_recall)
    # window -> {"n": .., "positives": .., figure: [value, low, high] (None: undefined)}
    windows: dict[str, dict[str, Any]]

    def encode(self) -> str:
        """The stored form (compact JSON)."""
        return json.dumps(
            {"at": self.at_s, "role": self.role, "target": self.target, "w": self.windows},
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> HistoryPoint:
        """The point stored as ``raw``."""
        data = json.loads(raw)
        return cls(float(data["at"]), str(data["role"]), str(data["target"]), dict(data["w"]))

    def figure(self, window: str, name: str) -> tuple[float | None, float | None, float | None]:
        """(value, low, high) of ``name`` over ``window``; Nones where undefined."""
        cell = self.windows.get(window, {}).get(name)
        if not isinstance(cell, list) or len(cell) != 3:
            return None, None, None
        value, low, high = cell
        return value, low, high


def _cell(figure: Any) -> list[float | None] | None:
    if not isinstance(figure, dict):
        return None
    return [figure.get("value"), figure.get("low"), figure.get("high")]


def points_of(status: dict[str, Any]) -> dict[int, HistoryPoint]:
    """Each watched version's point in an evaluation snapshot (``evaluation.evaluate``)."""
    at_s = datetime.fromisoformat(str(status["evaluated_at"])).timestamp()
    points = {}
    for role, figures in (status.get("roles") or {}).items():
        if "version" not in figures:
            continue
        windows: dict[str, dict[str, Any]] = {}
        target = ""
        for name, window in (figures.get("windows") or {}).items():
            kept: dict[str, Any] = {
                "n": window.get("n", 0),
                "positives": window.get("positives", 0),
            }
            kept |= {f: _cell(window.get(f)) for f in HISTORY_FIGURES if f in window}
            target = str(window.get("target", target))
            windows[name] = kept
        points[int(figures["version"])] = HistoryPoint(at_s, str(role), target, windows)
    return points


def read_history(
    client: redis.Redis, keys: Keys, domain: str, version: int, *, now_s: float | None = None
) -> list[HistoryPoint]:
    """``version``'s stored points, oldest first (none older than the age bound)."""
    raw: list[bytes] = client.lrange(keys.monitor_history(domain, version), 0, -1)  # type: ignore[assignment]
    oldest = (time.time() if now_s is None else now_s) - HISTORY_MAX_AGE_S
    return [p for p in map(HistoryPoint.decode, raw) if p.at_s >= oldest]


@dataclass(frozen=True)
class DriftAlarm:
    """One drift alarm: when, which detector, its statistic against its threshold."""

    at_s: float
    detector: str  # the stream: "score" or "error"
    statistic: float
    threshold: float
    direction: str
    events: int  # events the detector had seen since its last reset
    version: int | None  # the champion whose stream it watched

    def encode(self) -> str:
        """The stored form (JSON)."""
        return json.dumps(self.__dict__, separators=(",", ":"))

    @classmethod
    def decode(cls, raw: bytes | str) -> DriftAlarm:
        """The alarm stored as ``raw``."""
        return cls(**json.loads(raw))

    @property
    def at(self) -> datetime:
        """The alarm's time (UTC)."""
        return datetime.fromtimestamp(self.at_s, UTC)


def read_alarms(client: redis.Redis, keys: Keys, domain: str) -> list[DriftAlarm]:
    """The domain's kept drift alarms, newest first."""
    raw: list[bytes] = client.lrange(keys.monitor_alarms(domain), 0, -1)  # type: ignore[assignment]
    return [DriftAlarm.decode(r) for r in reversed(raw)]


@dataclass(frozen=True)
class KeptAction:
    """One alarm or action of the monitor's policy, kept with its time: what it was, what
    came of it, the champion then, and the figure against the threshold that raised it."""

    at_s: float  # the evaluation's time, seconds since the epoch
    # floor, floor-cleared, probation-loss, rollback, promote-challenger,
    # retire-challenger, retrain-trigger
    kind: str
    # raised, would-roll-back (probation alarm-only), done, stale, busy, refused, sent,
    # duplicate
    outcome: str
    champion: int | None  # the champion when it was decided
    version: int | None  # the version it is about (the champion for a floor alarm)
    other: int | None  # a rollback's target; the champion a challenger was compared with
    figure: str  # what raised it: f1, target_value, auprc, e_loss, e_win, positives, ...
    value: float | None
    threshold: float | None
    labelled: int  # labelled events behind it (the champion's, or the pairs compared)
    evidence: dict[str, Any]

    def encode(self) -> str:
        """The stored form (JSON)."""
        return json.dumps(self.__dict__, separators=(",", ":"), default=str)

    @classmethod
    def decode(cls, raw: bytes | str) -> KeptAction:
        """The record stored as ``raw``."""
        return cls(**json.loads(raw))

    @property
    def at(self) -> datetime:
        """Its time (UTC)."""
        return datetime.fromtimestamp(self.at_s, UTC)

    def as_status(self) -> dict[str, Any]:
        """As JSON-ready values, with the time in ISO form (the status, the console)."""
        return {"at": self.at.isoformat(), **self.__dict__}

    def summary(self) -> str:
        """The figure against its threshold in words."""
        value = "n/a" if self.value is None else f"{self.value:.4g}"
        threshold = "" if self.threshold is None else f" against {self.threshold:.4g}"
        return f"{self.figure} {value}{threshold} on {self.labelled} labelled events"


def read_actions(client: redis.Redis, keys: Keys, domain: str) -> list[KeptAction]:
    """The domain's kept alarms and actions of the policy, newest first."""
    raw: list[bytes] = client.lrange(keys.monitor_actions(domain), 0, -1)  # type: ignore[assignment]
    return [KeptAction.decode(r) for r in reversed(raw)]
