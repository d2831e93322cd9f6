"""The monitor's loop: read a batch, score it with every watched version, store it.

Each turn: follow the registry (between two batches, so a batch is scored by one set of
versions), poll labels and predictions, turn them into state changes (``intake.py``)
and write those with the offsets in one transaction (``state.py``); now and then
evaluate every version (``evaluation.py``), export the figures and store the snapshot.

Shutdown (the signal handlers are ``inferloop monitor run``'s): ``request_stop`` lets
the batch in hand be stored and the loop end.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass

import redis
from prometheus_client import generate_latest
from threadpoolctl import threadpool_limits

from inferloop.backoff import Backoff
from inferloop.connections import make_redis
from inferloop.domains import get_domain
from inferloop.httpserve import BackgroundHTTPServer, Reply
from inferloop.keys import Keys
from inferloop.monitor.decisions import POLICY_FIELD, RECENT_ALARMS, Decisions, Executor
from inferloop.monitor.drift import take_alarms
from inferloop.monitor.errors import LeaseLostError, MonitorError
from inferloop.monitor.evaluation import WINDOWS, evaluate
from inferloop.monitor.figures import Figures
from inferloop.monitor.implicit import (
    HORIZON_FIELD,
    NOTHING_DUE,
    Due,
    ImplicitNegatives,
    LabelledIds,
    open_delayed_reader,
)
from inferloop.monitor.intake import Intake, Sample
from inferloop.monitor.metrics import MonitorMetrics
from inferloop.monitor.reader import Polled, Reader
from inferloop.monitor.scoring import REDIS_DOWN_ERRORS, ROLES, WatchedVersions
from inferloop.monitor.state import Changes, StateStore, Stored
from inferloop.monitor.window import Bounds, Window
from inferloop.registry import CHAMPION, Registry
from inferloop.settings import Domain, Settings
from inferloop.topics import for_settings

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What one run did."""

    batches: int = 0
    labels: int = 0
    implicit_negatives: int = 0
    duplicates: int = 0
    predictions: int = 0
    stop_reason: str = ""
    # Monotonic times the first batch started and the last one was stored (rates).
    first_batch_at: float | None = None
    last_batch_at: float | None = None


class Monitor:
    """The live-quality monitor of one domain."""

    def __init__(
        self,
        settings: Settings,
        domain: Domain,
        *,
        registry_factory: Callable[[Settings], Registry] = Registry.from_settings,
    ) -> None:
        self.settings = settings
        self.section = settings.monitor
        self.domain = domain
        self.spec = get_domain(domain)
        # Implicit negatives (``implicit.py``): None, off.
        self.implicit_after_s = self.section.implicit_negative_after_s(domain)
        self.implicit: ImplicitNegatives | None = None
        # The last time the label reader was caught up (epoch s): no event falls due
        # past it, so its label, if published in time, is read before it is judged.
        self._labels_current_at = 0.0
        self.metrics = MonitorMetrics()
        self._registry_factory = registry_factory
        self._stop_reason = ""
        self._stopping = threading.Event()  # set with _stop_reason: ends a wait at once
        self.http_port: int | None = None
        self.summary = RunSummary()
        self._healthy = False

    # -- stopping ------------------------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        """Stop after the batch in hand (idempotent; safe from a signal handler)."""
        if not self._stop_reason:
            self._stop_reason = reason
        self._stopping.set()

    # -- the loop ------------------------------------------------------------------------
    def run(
        self, *, max_batches: int | None = None, until_idle_s: float | None = None
    ) -> RunSummary:
        """Monitor until asked to stop (or, bounded, after ``max_batches`` batches or
        ``until_idle_s`` without a record)."""
        with ExitStack() as stack, threadpool_limits(self.section.scoring_threads):
            self._open(stack)
            if not self._start(stack):
                return self._finish()
            last_record = time.monotonic()
            while not self._stop_reason:
                self._follow_registry()
                polled, due = self._poll()
                if len(polled) or due.offsets:
                    self._take(polled, due)
                    last_record = time.monotonic()
                else:
                    self._renew_if_due()
                self._evaluate_if_due()
                if max_batches is not None and self.summary.batches >= max_batches:
                    self.request_stop("max_batches")
                if until_idle_s is not None and time.monotonic() - last_record >= until_idle_s:
                    self.request_stop("idle")
            self._evaluate()
            self.store.release()
            return self._finish()

    def _finish(self) -> RunSummary:
        self.summary.stop_reason = self._stop_reason
        log.info(
            "monitor of %s stopped (%s) after %d batches: %d labels, %d implicit negatives, "
            "%d duplicates, %d predictions", self.domain, self._stop_reason,
            self.summary.batches, self.summary.labels, self.summary.implicit_negatives,
            self.summary.duplicates, self.summary.predictions,
        )  # fmt: skip
        return self.summary

    def _open(self, stack: ExitStack) -> None:
        self.client = make_redis(self.settings.redis)
        stack.callback(self.client.close)
        self.registry = self._registry_factory(self.settings)
        stack.callback(self.registry.close)
        keys = Keys(self.settings.redis.key_prefix)
        self.store = StateStore(self.client, keys, self.domain, self.section.lease_s)
        self.executor = Executor(self.domain, self.registry, self.client, keys, self.metrics)
        self.versions = WatchedVersions(
            self.registry, self.spec, self.section.probation_s, self._keep_previous
        )
        server = BackgroundHTTPServer(
            {"/metrics": self._metrics_reply, "/healthz": self._health_reply},
            self.section.metrics_host, self.section.metrics_port, name="monitor-http",
        )  # fmt: skip
        stack.callback(server.stop)
        server.start()
        self.http_port = server.port

    def _start(self, stack: ExitStack) -> bool:
        """Take the lease, read the state back, wait for a champion, open the reader."""
        if not self._wait(self.store.try_acquire, "the lease (another monitor holds it)"):
            return False
        stored = self.store.load()
        self._restore(stored)
        if not self._wait(self._champion_ready, "a champion"):
            return False
        self.reader = Reader(
            self.settings, for_settings(self.settings, self.domain), stored.offsets
        )
        stack.callback(self.reader.close)
        if self.implicit_after_s is not None:
            self.implicit = self._open_implicit(stack, stored, self.implicit_after_s)
        self._healthy = True
        log.info(
            "monitor of %s started: %d events in the window, %d served samples",
            self.domain, len(self.intake.window), len(self.intake.sample.items),
        )  # fmt: skip
        return True

    def _open_implicit(self, stack: ExitStack, stored: Stored, after_s: float) -> ImplicitNegatives:
        topic = for_settings(self.settings, self.domain).events
        reader = open_delayed_reader(self.settings, self.spec, topic, stored.offsets, after_s)
        stack.callback(reader.close)
        keys = Keys(self.settings.redis.key_prefix)
        ids = LabelledIds(self.client, keys, self.domain, after_s)
        return ImplicitNegatives(reader, ids)

    def _restore(self, stored: Stored) -> None:
        s = self.section
        bounds = Bounds(s.window_positives, s.window_time_s, s.max_window_events)
        sample = Sample(s.served_sample_fraction, s.max_served_samples, s.served_score_rtol)
        sample.items = stored.served
        sample.seq = max((x.seq for x in stored.served.values()), default=0) + 1
        window = Window(bounds, stored.entries)
        self.intake = Intake(self.spec, window, sample, self.implicit_after_s)
        self.intake.implicit_horizon_s = stored.offsets.get(HORIZON_FIELD, 0) / 1000
        self.counts: Counter[str] = Counter(stored.counts)
        self.decisions = Decisions(self.domain, s, stored.detectors, self.metrics, stored.actions)
        self._next_renew = self._next_evaluation = 0.0

    def _wait(self, ready: Callable[[], bool], what: str) -> bool:
        said = False
        while not self._stop_reason:
            try:
                if ready():
                    return True
            except REDIS_DOWN_ERRORS as exc:
                log.warning("monitor of %s: Redis unreachable: %s", self.domain, exc)
            if not said:
                log.info("monitor of %s: waiting for %s", self.domain, what)
                said = True
            self._stopping.wait(min(1.0, self.section.model_check_interval_s))
        return False

    def _champion_ready(self) -> bool:
        self.versions.refresh()
        self._set_model_info()
        return CHAMPION in self.versions.by_role

    def _keep_previous(self, champion: int, previous: int) -> bool:
        decisions = getattr(self, "decisions", None)
        return decisions is None or not decisions.probation_over(self.counts, champion, previous)

    # -- one batch -------------------------------------------------------------------------
    def _poll(self) -> tuple[Polled, Due]:
        """The next labels and predictions, and the events due as implicit negatives."""
        started = time.time()
        polled = self.reader.poll(self.section.poll_timeout_ms)
        if self.implicit is None:
            return polled, NOTHING_DUE
        if self.reader.labels_caught_up():
            self._labels_current_at = started
        if not self._labels_current_at:
            # Nothing can be due before the labels were read once to their end: holding
            # every partition at start only costs reads (and stalled partitions, seen
            # with kafka-python 3.0.12 under pause/resume: see implicit.py).
            return polled, NOTHING_DUE
        return polled, self.implicit.poll(min(time.time(), self._labels_current_at))

    def _take(self, polled: Polled, due: Due) -> None:
        started = time.perf_counter()
        if self.summary.first_batch_at is None:
            self.summary.first_batch_at = time.monotonic()
        changes = Changes(offsets=polled.offsets)
        if polled.predictions:
            self.intake.take_predictions(polled.predictions, changes)
        models = self.versions.versions()
        if polled.labels:
            taken = self.intake.take_labels(polled.labels, models, changes)
            if self.implicit is not None:
                self.implicit.remember(taken)  # before the batch is stored: see implicit.py
        if self.implicit is not None:
            self.implicit.take(due, self.intake, models, changes)
        if changes.appended:
            self.decisions.observe(changes.appended, self.versions.by_role, changes)
            champion = self.versions.by_role.get(CHAMPION)
            changes.alarms = take_alarms(  # stored with the batch that raised them
                self.decisions.detectors, champion.version if champion else None, time.time()
            )
        changes.dropped = self.intake.window.trim(time.time())
        self._commit(changes)
        self.counts.update(changes.counts)
        self._count(polled, changes)
        self.metrics.batch_seconds.labels(self.domain).observe(time.perf_counter() - started)

    def _commit(self, changes: Changes) -> None:
        """Store ``changes``, retrying while Redis is unreachable (the loop waits: its
        state cannot move without Redis); a stop request ends the wait unstored."""
        backoff = Backoff(self.section.redis_backoff_max_s)
        while True:
            try:
                self.store.commit(changes)
                break
            except LeaseLostError:
                # Another monitor took over: what this one holds in memory is no longer
                # the stored state; stopping is the only safe move.
                log.error("monitor of %s lost its lease; stopping without storing", self.domain)
                self.request_stop("lease lost")
                raise
            except REDIS_DOWN_ERRORS as exc:
                self.metrics.redis_up.labels(self.domain).set(0)
                if self._stop_reason:
                    raise MonitorError(
                        f"Redis unreachable while stopping ({exc}): the batch in hand is not "
                        "stored, and is read again at the next start"
                    ) from exc
                pause_s = backoff.next()
                log.warning("monitor of %s: Redis unreachable (%s); retrying in %.1f s",
                            self.domain, exc, pause_s)  # fmt: skip
                self._stopping.wait(pause_s)  # a stop request ends the wait
        self.metrics.redis_up.labels(self.domain).set(1)
        self._next_renew = time.monotonic() + self.section.lease_s / 3

    def _count(self, polled: Polled, changes: Changes) -> None:
        s, m, d = self.summary, self.metrics, self.domain
        s.last_batch_at = time.monotonic()
        s.batches += 1
        s.labels += changes.counts["labels"]
        s.implicit_negatives += changes.counts["implicit_negatives"]
        s.duplicates += changes.counts["duplicates"]
        s.predictions += len(polled.predictions) - changes.counts["prediction_rejects"]
        m.labels.labels(d).inc(changes.counts["labels"])
        m.duplicates.labels(d).inc(changes.counts["duplicates"])
        m.rejects.labels(d).inc(changes.counts["rejects"])
        m.prediction_rejects.labels(d).inc(changes.counts["prediction_rejects"])
        m.served_checked.labels(d).inc(changes.counts["served_checked"])
        m.served_mismatches.labels(d).inc(changes.counts["served_mismatches"])
        for name, n in changes.counts.items():
            if name.startswith("predicted:"):
                role = self.versions.role_of(int(name.split(":")[1])) or "other"
                m.predictions.labels(d, role).inc(n)

    def _renew_if_due(self) -> None:
        if time.monotonic() >= self._next_renew:
            self._commit(Changes())

    # -- the registry --------------------------------------------------------------------
    def _follow_registry(self) -> None:
        due = self.versions.refreshed_at + self.section.model_check_interval_s
        if time.monotonic() < due:
            return
        try:
            if self.versions.refresh():
                self._set_model_info()
            self.metrics.redis_up.labels(self.domain).set(1)
        except REDIS_DOWN_ERRORS as exc:
            self.versions.refreshed_at = time.monotonic()
            self.metrics.redis_up.labels(self.domain).set(0)
            log.warning("monitor of %s: registry unreachable (%s); keeping its versions",
                        self.domain, exc)  # fmt: skip

    def _set_model_info(self) -> None:
        self.metrics.model_info.clear()
        for role, model in self.versions.by_role.items():
            self.metrics.model_info.labels(self.domain, role, str(model.version)).set(1)

    # -- evaluation ------------------------------------------------------------------------
    def _evaluate_if_due(self) -> None:
        if time.monotonic() >= self._next_evaluation:
            self._evaluate()

    def _evaluate(self) -> None:
        self._next_evaluation = time.monotonic() + self.section.evaluate_interval_s
        live: dict[str, dict[str, Figures]] = {}
        status = evaluate(
            self.intake, self.versions.by_role, self.counts, self.section, time.time(), live=live
        )
        status["monitor"] = {"instance": self.store.token[:12]}
        self._decide(status, {name: f.get(CHAMPION) for name, f in live.items()})
        try:
            self.store.put_status(status)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("monitor of %s: status not stored: %s", self.domain, exc)
        self._export(status)

    def _decide(self, status: dict[str, object], figures: Mapping[str, Figures | None]) -> None:
        """Ask the policy what is due (``figures``: the champion's over each window) and
        do it; its state is stored when it advanced."""
        by_role, before = self.versions.by_role, self.decisions.policy.to_state()
        snapshot = self.decisions.snapshot(by_role, self.counts, figures)
        actions = self.decisions.decide(snapshot, self.executor)
        alarms, moves = self.decisions.alarms, self.decisions.actions
        alarms.extend(a for a in actions if a["action"] == "Alarm")
        moves.extend(a for a in actions if a["action"] != "Alarm")
        del alarms[:-RECENT_ALARMS], moves[:-RECENT_ALARMS]
        status["alarms"], status["actions"] = list(alarms), list(moves)
        kept = self.decisions.take_kept()
        status["alarm_log"] = self.decisions.kept_status()  # stored, newest first
        status["floor_breach"] = self.decisions.floor_breach
        status["probation"] = (
            None if snapshot.probation is None
            else {"version": snapshot.probation.new, "previous": snapshot.probation.old,
                  "positives_compared": snapshot.probation.counts.positives,
                  "discordant": snapshot.probation.counts.discordant}
        )  # fmt: skip
        after = self.decisions.policy.to_state()
        if after != before or kept:
            # Stored as it advances: a restart does not evaluate the same points again;
            # the alarms and actions it decided are stored with it.
            self._commit(Changes(detectors={POLICY_FIELD: after}, actions=kept))
        if any(a["action"] != "Alarm" for a in actions):
            self.versions.refreshed_at = 0.0  # follow the moves made at once

    def _export(self, status: dict[str, object]) -> None:
        m, d = self.metrics, self.domain
        window = status["window"]
        assert isinstance(window, dict)
        for name in WINDOWS:
            m.window_events.labels(d, name).set(window[f"{name}_events"])
            m.window_positives.labels(d, name).set(window[f"{name}_positives"])
        roles = status["roles"]
        assert isinstance(roles, dict)
        for role in ROLES:
            for name in WINDOWS:
                figures = roles.get(role, {}).get("windows", {}).get(name, {})
                _export_figures(m, d, role, name, figures)

    # -- HTTP ------------------------------------------------------------------------------
    def _metrics_reply(self) -> Reply:
        return 200, "text/plain; version=0.0.4", generate_latest(self.metrics.registry)

    def _health_reply(self) -> Reply:
        body = json.dumps({"domain": self.domain, "running": self._healthy}).encode()
        return (200 if self._healthy else 503), "application/json", body


def _export_figures(
    m: MonitorMetrics, domain: str, role: str, window: str, figures: dict[str, object]
) -> None:
    for figure, value in figures.items():
        if isinstance(value, dict) and "value" in value:
            for bound in ("value", "low", "high"):
                v = value.get(bound)
                m.figure.labels(domain, role, window, figure, bound).set(
                    float("nan") if v is None else float(v)
                )
