"""The monitor's decisions for one domain: probation, challengers, floors and drift.

The runtime hands ``Policy.evaluate`` a ``Snapshot`` (the paired counts of each running
comparison since it began, the champion's live figures, the drift alarms raised) and
carries out the actions it returns. The policy never touches Redis or Kafka: what it
decided and why is in each action's evidence, for the registry history.

- **Probation.** After any promotion (the retrain gate's or an operator's: the history's
  newest ``promote`` entry to the champion), the previous champion is re-scored beside
  the new one. At each evaluation point (every ``evaluation_positives`` new positives)
  the paired comparison is looked at; only a paired *loss* rolls back (``Rollback``), or
  only alarms with ``alarm_only``. Probation ends after ``probation_positives``
  positives. The rollback's cool-down forces shadow-first for the next candidate
  (``Keys.shadow_first``), so the system never flaps between two versions.
- **Shadow-first challengers** are promoted on a paired win (``PromoteChallenger``),
  retired on a paired loss, or retired undecided after ``challenger_max_positives``.
- **Floors.** A champion whose live figure's whole interval is on the wrong side of its
  floor, over the window by positives or else over the window by time, raises an alarm
  and a retrain trigger, never a rollback: under a shift every version may be below the
  floor, and the previous one is no cure. The window by positives reacts to a recent
  change; the window by time holds every label of the last hour, so its interval is
  narrower while positives are still few (the shift case: 50 positives give F1 an
  interval about 0.3 wide, and its first 200 labels are all spam).
- **Drift.** A detector's alarm is an alarm, and a trigger with ``drift_triggers``.

Triggers are rate limited by their id: ``monitor-<domain>-<reason>-<window>``, the
window being ``floor(now / trigger_min_interval_s)``, published once per id
(``inferloop.triggers.publish_once``); the policy also sends each id once itself. Within
a window a reason that persists triggers again only on more evidence: once the champion
was scored on as many new labelled events as its window by positives held at the last
trigger, doubling each time (``...-v<champion>-<labelled>``), and at once for a new
champion. Under a shift the first trigger comes on the first window of new data, too
little for a candidate to learn from (the newest labels are the retrain's holdout), and
its run is refused; with one trigger per window the worse champion then stayed for
hours. The doubling bounds the retrains to a few per window.
The anytime-valid comparison (``paired.py``) lets every evaluation point look at the
evidence without an alpha-spending schedule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from inferloop.monitor.figures import Figures, Interval
from inferloop.monitor.paired import (
    DEFAULT_WEIGHTING,
    PairedCounts,
    PairedVerdict,
    Weighting,
    decide,
)
from inferloop.settings import MonitorSettings

Bound = Literal["min", "max"]
# Comparisons whose evaluation points the state remembers (the latest ones).
MAX_REMEMBERED = 16


@dataclass(frozen=True)
class Floor:
    """A live floor on one figure (``Figures`` field name): at least (``min``) or at
    most (``max``) ``value``."""

    figure: str
    value: float | None  # None: no floor
    bound: Bound = "min"

    def breached(self, interval: Interval) -> bool:
        """Whether the whole interval is on the wrong side (NaN never breaches)."""
        if self.value is None:
            return False
        if self.bound == "min":
            return interval.high < self.value
        return interval.low > self.value


@dataclass(frozen=True)
class PolicyConfig:
    """One domain's decision settings."""

    domain: str
    evaluation_positives: int = 5
    alpha: float = 0.05
    min_discordant: int = 10
    weighting: Weighting = DEFAULT_WEIGHTING
    probation_positives: int = 300
    challenger_max_positives: int = 500
    alarm_only: bool = False
    cooldown_s: float = 7 * 24 * 3600.0
    trigger_min_interval_s: float = 6 * 3600.0
    drift_triggers: bool = True
    floors: tuple[Floor, ...] | None = None  # None: the monitor settings' defaults

    def live_floors(self) -> tuple[Floor, ...]:
        """The floors in force."""
        if self.floors is None:
            return settings_floors(MonitorSettings(), self.domain)
        return self.floors

    @classmethod
    def from_settings(cls, section: MonitorSettings, domain: str) -> PolicyConfig:
        """The ``monitor`` settings' config for ``domain``."""
        return cls(
            domain=domain,
            evaluation_positives=section.evaluation_positives,
            alpha=section.paired_alpha,
            min_discordant=section.min_discordant_pairs,
            weighting=section.paired_weighting,
            probation_positives=section.probation_positives,
            challenger_max_positives=section.challenger_max_positives,
            alarm_only=bool(getattr(section, f"{domain}_alarm_only", False)),
            cooldown_s=section.rollback_cooldown_s,
            trigger_min_interval_s=section.trigger_min_interval_s,
            drift_triggers=section.drift_triggers,
            floors=settings_floors(section, domain),
        )


# Live floors, apart from the offline gate's: the gate asks a candidate to be good,
# these ask a champion not to have become clearly bad. They come from the settings
# only: a second table of defaults here once held an emails F1 floor the running
# monitor never had, so the tests saw re-triggers the shift case did not.
def settings_floors(section: MonitorSettings, domain: str) -> tuple[Floor, ...]:
    """The live floors the settings set for ``domain`` (a None setting is no floor)."""
    wanted = [
        Floor("f1", getattr(section, f"{domain}_live_floor_f1")),
        Floor("auprc", getattr(section, f"{domain}_live_floor_auprc")),
    ]
    if domain == "emails":
        wanted.append(Floor("target_value", section.emails_live_max_ham_flagged, "max"))
    else:
        wanted.append(Floor("target_value", section.transactions_live_floor_fraud_recall))
    return tuple(f for f in wanted if f.value is not None)


# -- what the runtime tells the policy --------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """A running paired comparison: ``new`` against ``old`` since it began."""

    new: int
    old: int
    counts: PairedCounts

    @property
    def key(self) -> str:
        """Names the comparison in the policy's state."""
        return f"{self.new}-vs-{self.old}"


@dataclass(frozen=True)
class Snapshot:
    """What the monitor knows of one domain now."""

    now_s: float
    champion: int | None
    probation: Comparison | None = None  # champion (new) against the previous champion
    challenger: Comparison | None = None  # challenger (new) against the champion
    champion_figures: Figures | None = None  # over the window by positives
    champion_by_time: Figures | None = None  # over the window by time
    drift: Sequence[str] = ()  # detectors that alarmed since the last evaluation
    # Labelled events the champion was scored on (the monitor's counts): the evidence a
    # re-trigger waits for.
    champion_labelled: int = 0


# -- what the policy asks the runtime to do ----------------------------------------------
@dataclass(frozen=True)
class Rollback:
    """Move the champion back from ``version`` to ``to_version`` (compare-and-set on
    ``version``), mark ``version`` not promotable unreviewed, set the cool-down."""

    version: int
    to_version: int
    cooldown_s: float
    evidence: dict[str, Any]


@dataclass(frozen=True)
class PromoteChallenger:
    """Promote the challenger ``version`` over the champion ``over`` (compare-and-set)."""

    version: int
    over: int
    evidence: dict[str, Any]


@dataclass(frozen=True)
class RetireChallenger:
    """Remove the challenger alias from ``version``, with the recorded reason."""

    version: int
    reason: str
    evidence: dict[str, Any]


@dataclass(frozen=True)
class TriggerRetrain:
    """Publish a retrain trigger with this deterministic id (``publish_once``)."""

    reason: str
    trigger_id: str
    dedupe_s: float


@dataclass(frozen=True)
class Alarm:
    """Raise an alarm (metric, log line): ``kind`` and what it is about."""

    kind: str
    detail: dict[str, Any]


Action = Rollback | PromoteChallenger | RetireChallenger | TriggerRetrain | Alarm


@dataclass(frozen=True)
class TriggerMark:
    """The last trigger of one reason: its rate-limit window, the champion then, the
    labelled events that champion had been scored on, and the new labelled events a
    re-trigger within the window waits for (0: none)."""

    window: int
    champion: int | None = None
    labelled: int = 0
    step: int = 0

    def to_state(self) -> list[int | None]:
        """As JSON-ready values."""
        return [self.window, self.champion, self.labelled, self.step]

    @classmethod
    def from_state(cls, value: Any) -> TriggerMark:
        """The mark ``to_state`` gave (a bare window: a state from before re-triggers)."""
        if isinstance(value, int):
            return cls(value)
        window, champion, labelled, step = value
        return cls(int(window), None if champion is None else int(champion), int(labelled),
                   int(step))  # fmt: skip


@dataclass
class Policy:
    """The decisions of one domain; its small state (evaluation points reached,
    triggers sent) survives a restart through ``to_state`` / ``from_state``."""

    config: PolicyConfig
    points: dict[str, int] = field(default_factory=dict)
    triggers: dict[str, TriggerMark] = field(default_factory=dict)

    def evaluate(self, snapshot: Snapshot) -> list[Action]:
        """The actions due now."""
        actions: list[Action] = []
        if snapshot.probation is not None:
            actions += self._probation(snapshot.probation)
        if snapshot.challenger is not None:
            actions += self._challenger(snapshot.challenger)
        actions += self._floors(snapshot)
        actions += self._drift(snapshot)
        # Keep the points of the latest comparisons only, so the state stays small (an
        # old one seen again starts from its current point: harmless, anytime-valid).
        self.points = dict(list(self.points.items())[-MAX_REMEMBERED:])
        return actions

    def on_probation(self, comparison: Comparison) -> bool:
        """Whether the previous champion is still re-scored beside the new one."""
        return comparison.counts.positives < self.config.probation_positives

    # -- comparisons --------------------------------------------------------------------
    def _due(self, comparison: Comparison) -> bool:
        """Whether a new evaluation point was reached (and mark it reached)."""
        point = comparison.counts.positives // self.config.evaluation_positives
        if point <= self.points.get(comparison.key, 0):
            return False
        self.points.pop(comparison.key, None)  # to the end: the most recently decided
        self.points[comparison.key] = point
        return True

    def _verdict(self, comparison: Comparison) -> PairedVerdict:
        c = self.config
        return decide(
            comparison.counts, alpha=c.alpha, min_discordant=c.min_discordant, weighting=c.weighting
        )

    def _probation(self, comparison: Comparison) -> list[Action]:
        if not self.on_probation(comparison) or not self._due(comparison):
            return []
        verdict = self._verdict(comparison)
        if verdict.outcome != "loss":
            return []
        evidence = {"decision": "probation", "version": comparison.new,
                    "previous": comparison.old, **verdict.evidence}  # fmt: skip
        if self.config.alarm_only:
            return [Alarm("probation-loss", evidence)]
        return [
            Alarm("probation-loss", evidence),
            Rollback(comparison.new, comparison.old, self.config.cooldown_s, evidence),
        ]

    def _challenger(self, comparison: Comparison) -> list[Action]:
        if not self._due(comparison):
            return []
        verdict = self._verdict(comparison)
        evidence = {"decision": "challenger", "version": comparison.new,
                    "champion": comparison.old, **verdict.evidence}  # fmt: skip
        if verdict.outcome == "win":
            return [PromoteChallenger(comparison.new, comparison.old, evidence)]
        if verdict.outcome == "loss":
            return [RetireChallenger(comparison.new, "loses to the champion", evidence)]
        if comparison.counts.positives >= self.config.challenger_max_positives:
            reason = f"no evidence either way after {comparison.counts.positives} positives"
            return [RetireChallenger(comparison.new, reason, evidence)]
        return []

    # -- alarms and triggers -----------------------------------------------------------------
    def _floors(self, snapshot: Snapshot) -> list[Action]:
        if snapshot.champion is None:
            return []
        windows = {"positives": snapshot.champion_figures, "time": snapshot.champion_by_time}
        found = [
            (name, figures, breached)
            for name, figures in windows.items()
            if figures is not None and (breached := self._breached(figures))
        ]
        if not found:
            return []
        window, figures, breached = found[0]
        detail = {
            "version": snapshot.champion,
            "window": window,
            "n": figures.n,
            "positives": figures.positives,
            "breached": {f.figure: _floor_detail(f, getattr(figures, f.figure)) for f in breached},
        }
        return [Alarm("floor", detail), *self._trigger("floor", snapshot)]

    def _breached(self, figures: Figures) -> list[Floor]:
        return [f for f in self.config.live_floors() if f.breached(getattr(figures, f.figure))]

    def _drift(self, snapshot: Snapshot) -> list[Action]:
        actions: list[Action] = []
        for name in snapshot.drift:
            actions.append(Alarm("drift", {"detector": name, "version": snapshot.champion}))
            if self.config.drift_triggers:
                actions += self._trigger(f"drift_{name}", snapshot)
        return actions

    def _trigger(self, reason: str, snapshot: Snapshot) -> list[Action]:
        """One trigger per reason and rate-limit window, with the window's id; within the
        window, again for a new champion or on doubled evidence (``TriggerMark``)."""
        interval = self.config.trigger_min_interval_s
        window = math.floor(snapshot.now_s / interval)
        champion, labelled = snapshot.champion, snapshot.champion_labelled
        figures = snapshot.champion_figures or snapshot.champion_by_time
        step = max(1, figures.n if figures is not None else 0)
        base = f"monitor-{self.config.domain}-{reason.replace('_', '-')}-{window}"
        mark = self.triggers.get(reason)
        if mark is None or mark.window != window:
            trigger_id = base
        elif mark.champion != champion:
            trigger_id = f"{base}-v{champion}-{labelled}"
        elif mark.step and labelled - mark.labelled >= mark.step:
            trigger_id, step = f"{base}-v{champion}-{labelled}", 2 * mark.step
        else:
            return []
        self.triggers[reason] = TriggerMark(window, champion, labelled, step)
        return [TriggerRetrain(reason, trigger_id, dedupe_s=2 * interval)]

    # -- state -----------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """The policy's state as JSON-ready values."""
        return {
            "points": dict(self.points),
            "triggers": {reason: mark.to_state() for reason, mark in self.triggers.items()},
        }

    @classmethod
    def from_state(cls, config: PolicyConfig, state: Mapping[str, Any] | None) -> Policy:
        """The policy ``to_state`` gave (a fresh one for None)."""
        state = state or {}
        return cls(
            config,
            {str(k): int(v) for k, v in state.get("points", {}).items()},
            {str(k): TriggerMark.from_state(v) for k, v in state.get("triggers", {}).items()},
        )


def _floor_detail(floor: Floor, interval: Interval) -> dict[str, Any]:
    return {
        "bound": floor.bound,
        "floor": floor.value,
        "value": interval.value,
        "low": interval.low,
        "high": interval.high,
    }
