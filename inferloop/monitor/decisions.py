"""What the runtime feeds the policy (``policy.py``) and how it carries out its actions.

Per batch, with the batch's state: the paired counts of each running comparison (the
champion against the previous champion on probation, the challenger against the
champion) and the drift detectors of the champion's score and error streams. At each
evaluation: a ``Snapshot`` for ``Policy.evaluate``, and its actions carried out:

- ``Rollback``: under the domain's decision lease (SET NX PX), ``Registry.rollback``
  with ``expected_current`` = the champion the evidence is about and
  ``expected_previous`` = the version it was compared with (an operator's move in
  between wins: the compare-and-set fails, outcome ``stale``, nothing else happens).
  The registry marks the version ``rolled_back`` (promoted again only when reviewed);
  the shadow-first cool-down is set.
- ``PromoteChallenger``: ``Registry.promote_challenger`` fenced on the champion and the
  challenger the evidence is about (one step: the challenger alias is removed).
- ``RetireChallenger``: compare-and-set removal of the challenger alias.
- ``TriggerRetrain``: ``triggers.publish_once`` (one per deterministic id).
- ``Alarm``: a log line, a counter, and the status's alarm list.

Each floor and probation alarm and each action done (not the drift alarms: the batch
that raised them stores them, with their statistic) is kept as a
:class:`~inferloop.ops.monitor_history.KeptAction` with its time, the champion then and
the figure against the threshold that raised it; the runtime stores them in the
transaction that stores the policy's state they advanced (``take_kept``). A floor alarm
is kept when it begins or its breached figures change, and ``floor-cleared`` when the
champion's figures are back (the policy raises it at every evaluation meanwhile).

Redis unreachable while an action is carried out: outcome ``unreachable``, and the
caller gives the policy its state from before (the action is decided again next time).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields
from datetime import UTC, datetime
from typing import Any

import numpy as np
import redis

from inferloop.keys import Keys
from inferloop.monitor.drift import PageHinkley, StreamKind, detector
from inferloop.monitor.figures import Figures
from inferloop.monitor.intake import counts_by_version
from inferloop.monitor.metrics import MonitorMetrics
from inferloop.monitor.paired import PairedCounts, paired_counts
from inferloop.monitor.policy import (
    Action,
    Alarm,
    Comparison,
    Policy,
    PolicyConfig,
    PromoteChallenger,
    RetireChallenger,
    Rollback,
    Snapshot,
    TriggerRetrain,
)
from inferloop.monitor.scoring import CHALLENGER, PREVIOUS, REDIS_DOWN_ERRORS
from inferloop.monitor.state import Changes, release_lease
from inferloop.monitor.window import Entry
from inferloop.ops.monitor_history import KeptAction
from inferloop.registry import CHAMPION, PromotionConflictError, Registry, RegistryError
from inferloop.registry.serving import ActiveModel
from inferloop.settings import MonitorSettings
from inferloop.triggers import MONITOR, Trigger, publish_once

log = logging.getLogger(__name__)

STREAMS: tuple[StreamKind, ...] = ("score", "error")
POLICY_FIELD = "policy"
DECISION_LEASE_MS = 60_000
# Alarms and actions kept in the status snapshot, newest last.
RECENT_ALARMS = 20
PAIRED_FIELDS = tuple(f.name for f in fields(PairedCounts))


def paired_key(new: int, old: int) -> str:
    """The counters' name of the comparison of ``new`` against ``old``."""
    return f"paired:{int(new)}-vs-{int(old)}"


def comparisons(by_role: Mapping[str, ActiveModel]) -> list[tuple[ActiveModel, ActiveModel]]:
    """(new, old) pairs compared now: champion against previous, challenger against
    champion."""
    champion = by_role.get(CHAMPION)
    if champion is None:
        return []
    pairs = []
    if PREVIOUS in by_role:
        pairs.append((champion, by_role[PREVIOUS]))
    if CHALLENGER in by_role:
        pairs.append((by_role[CHALLENGER], champion))
    return pairs


def counts_of(counts: Mapping[str, int], new: int, old: int) -> PairedCounts:
    """The running paired counts of ``new`` against ``old``."""
    key = paired_key(new, old)
    return PairedCounts(**{f: int(counts.get(f"{key}:{f}", 0)) for f in PAIRED_FIELDS})


class Decisions:
    """The policy of one domain, its inputs kept with the batches, its actions done."""

    def __init__(
        self,
        domain: str,
        section: MonitorSettings,
        stored: Mapping[str, dict[str, Any]],
        metrics: MonitorMetrics,
        kept: Sequence[KeptAction] = (),
    ) -> None:
        self.domain = domain
        config = PolicyConfig.from_settings(section, domain)
        self.policy = Policy.from_state(config, stored.get(POLICY_FIELD))
        self._detectors_version = int(stored.get("drift", {}).get("version", 0))
        self.detectors = {
            kind: PageHinkley.from_state(state)
            for kind, state in stored.get("drift", {}).get("detectors", {}).items()
        }
        self.drifted: list[str] = []
        # The recent alarms and other actions (since this process started), newest last.
        self.alarms: list[dict[str, Any]] = []
        self.actions: list[dict[str, Any]] = []
        # The kept alarms and actions (the stored ones first), newest last; the ones not
        # stored yet.
        self.kept: list[KeptAction] = list(kept)[-RECENT_ALARMS:]
        self._unstored: list[KeptAction] = []
        # (champion, breached figures) of the floor alarm kept last, if not cleared since.
        self._floor_open = _open_floor(kept)
        # The floor breach of the last evaluation (the alarm's detail: the champion, the
        # window and each breached figure's interval), None while the floors hold: the
        # status carries it, so the console shows the monitor's verdict, not its own.
        self.floor_breach: dict[str, Any] | None = None
        self._metrics = metrics

    # -- per batch ---------------------------------------------------------------------------
    def observe(
        self, entries: Sequence[Entry], by_role: Mapping[str, ActiveModel], changes: Changes
    ) -> None:
        """Add the batch's new entries to the comparisons and the drift detectors."""
        if not entries:
            return
        y = np.fromiter((e.y for e in entries), dtype=np.int8, count=len(entries))
        for new, old in comparisons(by_role):
            new_s = np.array([e.scores[new.version] for e in entries])
            old_s = np.array([e.scores[old.version] for e in entries])
            batch = paired_counts(y, new_s, new.threshold, old_s, old.threshold)
            for name, n in asdict(batch).items():
                if n:
                    changes.counts[f"{paired_key(new.version, old.version)}:{name}"] += n
        champion = by_role.get(CHAMPION)
        if champion is not None:
            self._drift(y, entries, champion, changes)

    def _drift(
        self,
        y: np.ndarray[Any, Any],
        entries: Sequence[Entry],
        model: ActiveModel,
        changes: Changes,
    ) -> None:
        if model.version != self._detectors_version:
            self.detectors = {kind: detector(self.domain, kind) for kind in STREAMS}
            self._detectors_version = model.version
        scores = np.array([e.scores[model.version] for e in entries])
        errors = ((scores >= model.threshold) != y.astype(bool)).astype(np.float64)
        for kind, values in (("score", scores), ("error", errors)):
            ph = self.detectors[kind]
            if any([ph.update(float(v)) for v in values]):
                self.drifted.append(kind)
        changes.detectors["drift"] = {
            "version": model.version,
            "detectors": {kind: ph.to_state() for kind, ph in self.detectors.items()},
        }

    # -- per evaluation ------------------------------------------------------------------------
    def snapshot(
        self,
        by_role: Mapping[str, ActiveModel],
        counts: Mapping[str, int],
        figures: Mapping[str, Figures | None],
    ) -> Snapshot:
        """What the policy is told now (``figures``: the champion's by window; the drift
        alarms since the last one, once)."""
        champion = by_role.get(CHAMPION)
        probation = challenger = None
        for new, old in comparisons(by_role):
            comparison = Comparison(
                new.version, old.version, counts_of(counts, new.version, old.version)
            )
            if new is champion:
                probation = comparison
            else:
                challenger = comparison
        drift, self.drifted = tuple(dict.fromkeys(self.drifted)), []
        return Snapshot(
            now_s=time.time(),
            champion=champion.version if champion else None,
            probation=probation,
            challenger=challenger,
            champion_figures=figures.get("positives"),
            champion_by_time=figures.get("time"),
            drift=drift,
            champion_labelled=(
                sum(counts_by_version(counts, "labelled").get(champion.version, {}).values())
                if champion
                else 0
            ),
        )

    def decide(self, snapshot: Snapshot, executor: Executor) -> list[dict[str, Any]]:
        """The policy's actions for ``snapshot``, carried out by ``executor``; what was
        done. If Redis was unreachable for one of them the policy keeps its state from
        before, so they are decided again next time (a move done meanwhile is fenced, a
        trigger already sent is sent once)."""
        before = self.policy.to_state()
        actions = self.policy.evaluate(snapshot)
        done = executor.run(actions)
        if any(a["outcome"] == "unreachable" for a in done):
            self.policy = Policy.from_state(self.policy.config, before)
        self._keep(snapshot, actions, [a["outcome"] for a in done])
        return done

    def probation_over(self, counts: Mapping[str, int], champion: int, previous: int) -> bool:
        """Whether the champion's probation ended (enough positives compared)."""
        comparison = Comparison(champion, previous, counts_of(counts, champion, previous))
        return not self.policy.on_probation(comparison)

    def take_kept(self) -> list[KeptAction]:
        """The alarms and actions kept since the last call, to store (oldest first)."""
        taken, self._unstored = self._unstored, []
        return taken

    def kept_status(self) -> list[dict[str, Any]]:
        """The recent kept alarms and actions for the status, newest first."""
        return [k.as_status() for k in reversed(self.kept)]

    def _keep(self, snapshot: Snapshot, actions: Sequence[Action], outcomes: Sequence[str]) -> None:
        breach = next(
            (a.detail for a in actions if isinstance(a, Alarm) and a.kind == "floor"), None
        )
        self.floor_breach = None if breach is None else dict(breach)
        records = self._floor_records(snapshot, breach)
        alarm_only = self.policy.config.alarm_only
        for action, outcome in zip(actions, outcomes, strict=True):
            if outcome != "unreachable":  # decided again next time, kept then
                records += _records(action, outcome, snapshot, breach, alarm_only)
        self._unstored += records
        self.kept += records
        del self.kept[:-RECENT_ALARMS]

    def _floor_records(
        self, snapshot: Snapshot, breach: Mapping[str, Any] | None
    ) -> list[KeptAction]:
        """A floor alarm when it begins or changes, ``floor-cleared`` when it ends."""
        if breach is None:
            opened = self._floor_open
            if opened is None or (
                snapshot.champion_figures is None
                and snapshot.champion_by_time is None
                and snapshot.champion == opened[0]
            ):
                return []  # nothing open, or no figures to say it ended
            self._floor_open = None
            cleared = KeptAction(
                at_s=snapshot.now_s, kind="floor-cleared", outcome="raised",
                champion=snapshot.champion, version=opened[0], other=None,
                figure=",".join(opened[1]), value=None, threshold=None,
                labelled=snapshot.champion_labelled, evidence={},
            )  # fmt: skip
            return [cleared]
        figures = sorted(breach["breached"])
        state = (int(breach["version"]), tuple(figures))
        if state == self._floor_open:
            return []
        self._floor_open = state
        common = {"positives": breach["positives"], "breached": figures,
                  "window": breach.get("window", "positives"),
                  "champion_labelled": snapshot.champion_labelled}  # fmt: skip
        return [
            KeptAction(
                at_s=snapshot.now_s,
                kind="floor",
                outcome="raised",
                champion=snapshot.champion,
                version=state[0],
                other=None,
                figure=figure,
                value=cell["value"],
                threshold=cell["floor"],
                labelled=int(breach["n"]),
                evidence={**cell, **common},
            )
            for figure, cell in sorted(breach["breached"].items())
        ]


class Executor:
    """Carries out the policy's actions against the registry and the trigger stream."""

    def __init__(
        self,
        domain: str,
        registry: Registry,
        client: redis.Redis,
        keys: Keys,
        metrics: MonitorMetrics,
    ) -> None:
        self.domain = domain
        self._registry = registry
        self._redis = client
        self._keys = keys
        self._metrics = metrics

    def run(self, actions: Sequence[Action]) -> list[dict[str, Any]]:
        """Do each action; what was done, for the status and the log."""
        done = []
        for action in actions:
            outcome = self._one(action)
            kind = type(action).__name__
            self._metrics.actions.labels(self.domain, kind, outcome).inc()
            done.append({"action": kind, "outcome": outcome, **_summary(action)})
        return done

    def _one(self, action: Action) -> str:
        if isinstance(action, Alarm):
            log.warning(
                "ALARM %s %s: %s", self.domain, action.kind, json.dumps(action.detail, default=str)
            )
            self._metrics.alarms.labels(self.domain, action.kind).inc()
            return "raised"
        try:
            if isinstance(action, TriggerRetrain):
                return self._trigger(action)
            return self._under_lease(action)
        except REDIS_DOWN_ERRORS as exc:
            log.warning("%s: %s not done, Redis unreachable: %s", self.domain,
                        type(action).__name__, exc)  # fmt: skip
            return "unreachable"
        except PromotionConflictError as exc:
            log.warning("%s: %s not done: %s", self.domain, type(action).__name__, exc)
            return "stale"
        except RegistryError as exc:
            log.warning("%s: %s not done: %s", self.domain, type(action).__name__, exc)
            return "refused"

    def _trigger(self, action: TriggerRetrain) -> str:
        trigger = Trigger(
            trigger_id=action.trigger_id, domain=self.domain,  # type: ignore[arg-type]
            force=False, requested_by=MONITOR, requested_at=datetime.now(UTC).isoformat(),
        )  # fmt: skip
        entry = publish_once(self._redis, self._keys, trigger, dedupe_s=action.dedupe_s)
        log.info("%s: retrain trigger %s (%s): %s", self.domain, action.trigger_id,
                 action.reason, "sent" if entry else "sent already")  # fmt: skip
        return "sent" if entry else "duplicate"

    def _under_lease(self, action: Action) -> str:
        lease, token = self._keys.monitor_decision(self.domain), uuid.uuid4().hex
        if not self._redis.set(lease, token, nx=True, px=DECISION_LEASE_MS):
            return "busy"
        try:
            return self._move(action)
        finally:
            release_lease(self._redis, lease, token)

    def _move(self, action: Action) -> str:
        reg, name = self._registry, self.domain
        champion = reg.resolve(name, CHAMPION)
        reason = _reason(action)
        if isinstance(action, Rollback):
            if champion is None or champion.version != action.version:
                return "stale"
            reg.rollback(name, reason, actor="monitor", expected_current=champion,
                         expected_previous=action.to_version)  # fmt: skip
            self._redis.set(self._keys.shadow_first(name), str(action.version),
                             ex=max(1, int(action.cooldown_s)))  # fmt: skip
            log.warning(
                "%s: rolled back v%d to v%d: %s", name, action.version, action.to_version, reason
            )
            return "done"
        if isinstance(action, PromoteChallenger):
            if champion is None or champion.version != action.over:
                return "stale"
            reg.promote_challenger(name, reason=reason, actor="monitor",
                                   expected_champion=champion,
                                   expected_challenger=action.version)  # fmt: skip
            return "done"
        if isinstance(action, RetireChallenger):
            reg.remove_alias(name, CHALLENGER, expected_current=action.version, reason=reason,
                             actor="monitor")  # fmt: skip
            return "done"
        return "unknown"


def _open_floor(kept: Sequence[KeptAction]) -> tuple[int, tuple[str, ...]] | None:
    """The floor alarm still open in ``kept`` (oldest first): (champion, figures)."""
    for k in reversed(kept):
        if k.kind == "floor-cleared":
            return None
        if k.kind == "floor" and k.version is not None:
            return k.version, tuple(k.evidence.get("breached", [k.figure]))
    return None


def _records(
    action: Action,
    outcome: str,
    snapshot: Snapshot,
    breach: Mapping[str, Any] | None,
    alarm_only: bool,
) -> list[KeptAction]:
    """What is kept of one action done (nothing of a floor or drift alarm: kept apart)."""
    if isinstance(action, Alarm):
        if action.kind != "probation-loss":
            return []
        ev = action.detail
        outcome = "would-roll-back" if alarm_only else outcome
        kind, version, other, figure = (
            "probation-loss",
            ev.get("version"),
            ev.get("previous"),
            "e_loss",
        )
    elif isinstance(action, Rollback):
        ev, figure = action.evidence, "e_loss"
        kind, version, other = "rollback", action.version, action.to_version
    elif isinstance(action, PromoteChallenger):
        ev, figure = action.evidence, "e_win"
        kind, version, other = "promote-challenger", action.version, action.over
    elif isinstance(action, RetireChallenger):
        ev = {"reason": action.reason, **action.evidence}
        figure = "e_loss" if ev.get("outcome") == "loss" else "positives"
        kind, version, other = "retire-challenger", action.version, ev.get("champion")
    else:
        return [_trigger_record(action, outcome, snapshot, breach)]
    value, threshold = ev.get(figure), ev.get("threshold_e") if figure != "positives" else None
    record = KeptAction(
        at_s=snapshot.now_s, kind=kind, outcome=outcome, champion=snapshot.champion,
        version=version, other=other, figure=figure, value=value, threshold=threshold,
        labelled=int(ev.get("n", 0)), evidence=json.loads(json.dumps(ev, default=str)),
    )  # fmt: skip
    return [record]


def _trigger_record(
    action: TriggerRetrain, outcome: str, snapshot: Snapshot, breach: Mapping[str, Any] | None
) -> KeptAction:
    """A retrain trigger, with the floor figure behind it (or the drift detector's name)."""
    figure, value, threshold = action.reason, None, None
    if action.reason == "floor" and breach is not None:
        figure, cell = min(breach["breached"].items())
        value, threshold = cell["value"], cell["floor"]
    return KeptAction(
        at_s=snapshot.now_s, kind="retrain-trigger", outcome=outcome,
        champion=snapshot.champion, version=snapshot.champion, other=None, figure=figure,
        value=value, threshold=threshold, labelled=snapshot.champion_labelled,
        evidence={"reason": action.reason, "trigger_id": action.trigger_id},
    )  # fmt: skip


def _reason(action: Action) -> str:
    evidence = getattr(action, "evidence", {})
    text = json.dumps(evidence, default=str, separators=(",", ":"), sort_keys=True)
    return f"monitor {type(action).__name__}: {text}"[:1000]


def _summary(action: Action) -> dict[str, Any]:
    summary = {k: v for k, v in asdict(action).items() if k != "evidence"}
    return json.loads(json.dumps(summary, default=str))  # type: ignore[no-any-return]
