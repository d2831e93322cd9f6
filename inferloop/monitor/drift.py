"""Drift alarms: a Page-Hinkley change detector per stream (champion scores, errors).

Page-Hinkley (Page 1954; Hinkley 1971) keeps the running mean of the stream since it
last reset and the cumulative deviation from it, less a tolerance ``delta`` per event;
it alarms when that sum rises more than ``threshold`` above its lowest point (``up``),
falls more than ``threshold`` below its highest (``down``), or either (``both``). Its
state is five numbers, so the monitor stores it in Redis after every batch and a
restarted monitor goes on where the last one stopped. After an alarm it starts again
from the next event: one shift raises one alarm, not one per event.

Written here rather than taken from ``river`` (whose ``PageHinkley`` is the same few
lines): it saves a dependency and its state format is ours to keep stable.

The defaults (``DEFAULTS``) are tuned on the real data sets by ``bench/monitor_sim.py``
(drift section): no alarm over 200,000 events of a stationary stream (a data set's
events after the training slice, shuffled), several seeds, and the delay on a real
shift (an SMS-trained model scored on SpamAssassin mail).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from inferloop.ops.monitor_history import DriftAlarm

Direction = Literal["up", "down", "both"]
StreamKind = Literal["score", "error"]


@dataclass(frozen=True)
class DriftConfig:
    """One detector's tuning."""

    # The change in the stream's mean tolerated without alarm (the stream's units).
    delta: float
    # The cumulative excess over ``delta`` that raises the alarm.
    threshold: float
    # Events before the first alarm may be raised (the mean settles first).
    min_samples: int = 1000
    direction: Direction = "both"

    def __post_init__(self) -> None:
        if self.delta < 0 or self.threshold <= 0 or self.min_samples < 1:
            raise ValueError(f"not a Page-Hinkley tuning: {self!r}")


# Tuned per domain and stream by ``python -m bench.monitor_sim drift`` (the error stream
# alarms only on more errors). Over 5 x 200,000 shuffled events per stream: 0 alarms;
# the largest statistic 11.6 of 25 (emails scores), 5.3 of 15 (emails errors), 3.1 of 20
# (transactions scores), 3.9 of 20 (transactions errors). In their own time order the
# 181,604 transactions raise one alarm per stream (at events 108,722 and 107,477: a
# burst of fraud). The SMS model on SpamAssassin mail: found after 35 events (scores,
# mean 0.12 -> 0.84) and 236 (errors, 1.1 % -> 63 %), none before the shift.
DEFAULTS: dict[tuple[str, StreamKind], DriftConfig] = {
    ("emails", "score"): DriftConfig(delta=0.05, threshold=25.0, min_samples=500),
    ("emails", "error"): DriftConfig(delta=0.02, threshold=15.0, min_samples=500, direction="up"),
    ("transactions", "score"): DriftConfig(delta=0.005, threshold=20.0),
    ("transactions", "error"): DriftConfig(delta=0.005, threshold=20.0, direction="up"),
}


class PageHinkley:
    """A Page-Hinkley detector; ``update`` each value in stream order."""

    def __init__(self, config: DriftConfig) -> None:
        self.config = config
        self.n = 0
        self.mean = 0.0
        self.up = 0.0  # the rise of the cumulative deviation above its lowest point
        self.down = 0.0  # its fall below its highest point
        self.alarms = 0
        # (statistic, events seen) of each alarm not yet taken by ``take_alarms``; not
        # part of the stored state: the batch that raised them stores them as alarms.
        self.raised: list[tuple[float, int]] = []

    def update(self, x: float) -> bool:
        """Take one value; True when it raises the alarm (the detector then restarts)."""
        self.n += 1
        self.mean += (x - self.mean) / self.n
        deviation = x - self.mean
        self.up = max(0.0, self.up + deviation - self.config.delta)
        self.down = max(0.0, self.down - deviation - self.config.delta)
        if self.n < self.config.min_samples or self.statistic <= self.config.threshold:
            return False
        self.alarms += 1
        self.raised.append((self.statistic, self.n))
        self.n, self.mean, self.up, self.down = 0, 0.0, 0.0, 0.0
        return True

    @property
    def statistic(self) -> float:
        """The test statistic in the configured direction (alarm above ``threshold``)."""
        direction = self.config.direction
        if direction == "up":
            return self.up
        return self.down if direction == "down" else max(self.up, self.down)

    def to_state(self) -> dict[str, Any]:
        """The detector as JSON-ready values (its tuning included)."""
        return {
            "config": asdict(self.config),
            "n": self.n,
            "mean": self.mean,
            "up": self.up,
            "down": self.down,
            "alarms": self.alarms,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], config: DriftConfig | None = None) -> PageHinkley:
        """The detector ``to_state`` gave; with ``config``, retuned (its sums kept)."""
        detector = cls(config or DriftConfig(**state["config"]))
        detector.n = int(state["n"])
        detector.mean = float(state["mean"])
        detector.up = float(state["up"])
        detector.down = float(state["down"])
        detector.alarms = int(state.get("alarms", 0))
        return detector


def detector(domain: str, kind: StreamKind) -> PageHinkley:
    """A fresh detector with the tuned defaults of ``domain``'s ``kind`` stream."""
    return PageHinkley(DEFAULTS[(domain, kind)])


def take_alarms(
    detectors: Mapping[str, PageHinkley], version: int | None, at_s: float
) -> list[DriftAlarm]:
    """The alarms the ``detectors`` (by stream) raised since the last call, stamped with
    ``at_s`` (the batch's time) and the champion ``version`` they watched; each
    detector's pending list is emptied."""
    alarms = []
    for name, ph in detectors.items():
        for statistic, events in ph.raised:
            alarms.append(
                DriftAlarm(at_s=at_s, detector=name, statistic=statistic,
                           threshold=ph.config.threshold, direction=ph.config.direction,
                           events=events, version=version)
            )  # fmt: skip
        ph.raised.clear()
    return alarms
