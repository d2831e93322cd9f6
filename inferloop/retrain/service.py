"""The retrain service: each domain's schedule, operator triggers, metrics and health.

APScheduler (3.x, UTC) fires each domain's schedule with one run at a time per domain
(``max_instances=1``), missed firings coalesced into one, and a misfire grace time
after which a firing is logged and counted as missed, never dropped silently. Every
firing is claimed in Redis (``SET NX`` on domain and fire time), so with several
instances it runs once. Operator triggers arrive on a Redis Stream read by a consumer
group; each is acknowledged only after its outcome is stored.

The main loop is orchestration only: heartbeat, claim idle triggers, read new ones.
Signal handlers only call :meth:`RetrainService.request_stop`. On stop the scheduler
fires nothing more, a running fit gets ``shutdown_grace_s`` to finish, and after that
(or on a second signal) its lease is released so another instance can take over;
triggers not finished stay pending for the next instance.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.schedulers.background import BackgroundScheduler

from inferloop.keys import Keys
from inferloop.registry import Registry
from inferloop.retrain.job import RetrainJob, RunRequest
from inferloop.retrain.monitoring import ServiceMetrics, monitoring_server
from inferloop.retrain.outcome import RunOutcome
from inferloop.retrain.progress import LogProgress, Progress
from inferloop.retrain.schedule import (
    FiringExecutor,
    claim_firing,
    parse_schedule,
    scheduled_fire_time,
)
from inferloop.retrain.status import iso, read_status, record_next_run, redis_errors, utc_now
from inferloop.retrain.triggers import Trigger, TriggerQueue
from inferloop.settings import DOMAINS, Domain, Settings
from inferloop.triggers import MONITOR

log = logging.getLogger(__name__)

READ_BLOCK_S = 1.0
CLAIM_TTL = timedelta(days=2)
# Different triggers that may wait per domain behind its running run; one more is
# answered ``lock_held`` (and acknowledged) at once, for its sender to send again.
MAX_WAITING_PER_DOMAIN = 16


@dataclass
class ServiceReport:
    """What a bounded (or stopped) service did."""

    runs: list[RunOutcome] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)  # runs whose lease was released


class RetrainService:
    """Schedules and triggers for the domains; one instance per process."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        *,
        domains: Sequence[Domain] = DOMAINS,
        metrics_port: int | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.settings = settings
        self.retrain = settings.retrain
        self.registry = registry
        self.domains = tuple(domains)
        self.instance = self.retrain.instance_id
        self.keys = Keys(settings.redis.key_prefix)
        self.client: redis.Redis = registry.client
        self.queue = TriggerQueue(self.client, self.keys, outcome_ttl_s=self.retrain.outcome_ttl_s)
        self.metrics = ServiceMetrics()
        self._cancel = threading.Event()
        self.job = RetrainJob(
            settings,
            registry,
            role=f"service:{self.instance}",
            progress=progress or LogProgress(),
            cancel=self._cancel,
        )
        self._stop = threading.Event()
        self._force = threading.Event()
        # Set once the service has signed in and its scheduler runs.
        self.started = threading.Event()
        self._lock = threading.Lock()
        # Runs going on here per domain: a count, since a scheduled firing (answered
        # lock_held by the job) can overlap a trigger's run of the same domain.
        self._running: dict[str, int] = {}
        self._inflight: dict[str, Trigger] = {}
        # Per domain, the triggers that found its run going, oldest entry first: the
        # first runs when that run ends (their entries stay pending, kept fresh).
        self._deferred: dict[str, list[Trigger]] = {}
        self._outcomes: list[RunOutcome] = []
        self._next_beat = 0.0
        self.scheduler = self._build_scheduler()
        port = self.retrain.metrics_port if metrics_port is None else metrics_port
        self.http = monitoring_server(self.metrics, self.health, self.retrain.metrics_host, port)

    # -- the loop ------------------------------------------------------------------------
    def run(self, *, max_runs: int | None = None, timeout_s: float | None = None) -> ServiceReport:
        """Serve until :meth:`request_stop`, or (bounded) ``max_runs`` runs or ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        log.info(
            "retrain service %s start: schedules for %s",
            self.instance,
            ", ".join(self.domains) or "no domain",
        )
        try:
            with redis_errors(self.settings.redis):
                self._start()
            while not self._finished(max_runs, deadline):
                self._serve_once_or_wait()
        finally:
            abandoned = self._shutdown()
        with self._lock:
            runs = list(self._outcomes)
        log.info("retrain service %s finish: %d runs", self.instance, len(runs))
        return ServiceReport(runs, abandoned)

    def request_stop(self) -> None:
        """Stop taking work (first call); release running leases now (second call)."""
        if self._stop.is_set():
            self._force.set()
        self._stop.set()

    def _finished(self, max_runs: int | None, deadline: float | None) -> bool:
        if self._stop.is_set():
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return True
        with self._lock:
            return max_runs is not None and len(self._outcomes) >= max_runs

    def _start(self) -> None:
        self.queue.ensure_group()
        self._heartbeat()
        self.http.start()
        log.info(
            "retrain metrics and health on http://%s:%d/metrics, /healthz",
            self.retrain.metrics_host,
            self.http.port,
        )
        self.scheduler.start()
        self._publish_next_runs()
        for trigger in self.queue.read_own_pending(self.instance):
            log.info("trigger %s was pending with this instance: running it", trigger.trigger_id)
            self._dispatch(trigger)
        self.started.set()

    def _serve_once_or_wait(self) -> None:
        try:
            self._serve_once()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # Runs in progress go on; triggers wait in Redis until it answers again.
            log.warning("retrain service %s: Redis unreachable (%s); retrying", self.instance, exc)
            self._stop.wait(1.0)

    def _serve_once(self) -> None:
        if time.monotonic() >= self._next_beat:
            self._heartbeat()
            with self._lock:
                working = list(self._inflight)
            self.queue.keep_fresh(self.instance, working)
            for trigger in self.queue.claim_idle(self.instance, self.retrain.trigger_claim_idle_s):
                log.warning(
                    "trigger %s was left by a stopped instance: running it", trigger.trigger_id
                )
                self._dispatch(trigger)
            # A lease another instance held may be free now: try the waiting triggers again.
            with self._lock:
                waiting = [domain for domain, queued in self._deferred.items() if queued]
            for domain in waiting:
                self._release_deferred(domain)
            self._next_beat = time.monotonic() + self.retrain.heartbeat_s
        block_ms = int(min(READ_BLOCK_S, self.retrain.heartbeat_s) * 1000)
        for trigger in self.queue.read_new(self.instance, block_ms):
            self._dispatch(trigger)

    def _shutdown(self) -> list[str]:
        log.info("retrain service %s stopping", self.instance)
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        deadline = time.monotonic() + self.retrain.shutdown_grace_s
        while self._busy() and time.monotonic() < deadline and not self._force.is_set():
            time.sleep(0.1)
        abandoned: list[str] = []
        if self._busy():
            self._cancel.set()
            abandoned = self.job.release_leases()
        self._leave()
        self.http.stop()
        return abandoned

    def _busy(self) -> bool:
        with self._lock:
            return any(self._running.values())

    # -- work ----------------------------------------------------------------------------
    def _dispatch(self, trigger: Trigger) -> None:
        with self._lock:
            if trigger.entry_id in self._inflight:
                return
        if self.queue.done_already(trigger):
            log.info("trigger %s ran already: acknowledging it", trigger.trigger_id)
            self.queue.ack(trigger.entry_id)
            return
        with self._lock:
            self._inflight[trigger.entry_id] = trigger
        self.scheduler.add_job(
            self._run_trigger,
            args=[trigger],
            id=f"trigger-{trigger.trigger_id}",
            name=f"trigger {trigger.trigger_id} ({trigger.domain})",
            misfire_grace_time=None,
        )

    def _run_trigger(self, trigger: Trigger) -> None:
        waiting = False
        try:
            if self._stop.is_set():
                return
            if self._domain_running(trigger.domain):
                waiting = self._defer(trigger)
                return
            outcome = self._execute(trigger_request(trigger))
            if outcome.outcome == "cancelled":
                log.warning("trigger %s stays pending for the next instance", trigger.trigger_id)
                return
            if outcome.outcome == "lock_held":
                # Another run holds the lease (another instance's, or an overlapping one
                # here): this one waits, and is tried again when it ends or at heartbeats.
                waiting = self._defer(trigger)
                return
            self.queue.finish(trigger, outcome)
        finally:
            if not waiting:
                with self._lock:
                    self._inflight.pop(trigger.entry_id, None)

    def _domain_running(self, domain: str) -> bool:
        with self._lock:
            return self._running.get(domain, 0) > 0

    def _defer(self, trigger: Trigger) -> bool:
        """Queue ``trigger`` behind its domain's running run; whether it waits.

        A waiting trigger asking for the same run (same ``force``, ``seed`` and
        ``params``) is merged with it: the older of the two is answered ``superseded``
        (naming the newer), since the run the newer starts reads every label the older
        would have. Different requests wait in turn, oldest entry first, at most
        :data:`MAX_WAITING_PER_DOMAIN`; one past that is answered ``lock_held``. A
        trigger that does not wait has been answered.
        """
        with self._lock:
            queued = self._deferred.setdefault(trigger.domain, [])
            keep, drop = _merge(queued, trigger)
            full = drop is None and len(queued) >= MAX_WAITING_PER_DOMAIN
            if not full:
                if drop is not None:
                    queued.remove(drop)
                if keep not in queued:
                    queued.append(keep)
                queued.sort(key=lambda t: _entry_order(t.entry_id))
        if full:
            self._refuse(trigger, len(queued))
            return False
        log.info("trigger %s waits for the running retrain of %s", keep.trigger_id, trigger.domain)
        if drop is not None:
            self._supersede(drop, keep)
        return keep is trigger

    def _refuse(self, trigger: Trigger, waiting: int) -> None:
        now = iso(utc_now())
        reason = (
            f"{waiting} different triggers already wait for the running retrain of "
            f"{trigger.domain} (at most {MAX_WAITING_PER_DOMAIN}): send it again later"
        )
        request = trigger_request(trigger)
        outcome = RunOutcome(
            request.run_id,
            trigger.domain,
            request.trigger,
            "lock_held",
            reason,
            now,
            finished_at=now,
        )
        log.warning("trigger %s: %s", trigger.trigger_id, reason)
        self.queue.finish(trigger, outcome)

    def _supersede(self, old: Trigger, new: Trigger) -> None:
        now = iso(utc_now())
        reason = f"superseded by trigger {new.trigger_id}, which runs when the running run ends"
        request = trigger_request(old)
        outcome = RunOutcome(
            request.run_id, old.domain, request.trigger, "superseded", reason, now, finished_at=now
        )
        log.info("trigger %s %s", old.trigger_id, reason)
        self.queue.finish(old, outcome)
        with self._lock:
            self._inflight.pop(old.entry_id, None)

    def _release_deferred(self, domain: str) -> None:
        """Start the domain's waiting trigger, unless a run of the domain goes on here."""
        with self._lock:
            queued = self._deferred.get(domain)
            if self._running.get(domain, 0) > 0 or self._stop.is_set() or not queued:
                return
            trigger = queued.pop(0)
        log.info("trigger %s: the domain's run ended, running it", trigger.trigger_id)
        self.scheduler.add_job(
            self._run_trigger,
            args=[trigger],
            name=f"trigger {trigger.trigger_id} ({trigger.domain})",
            misfire_grace_time=None,
        )

    def _fire(self, domain: Domain) -> None:
        fire_time = scheduled_fire_time() or utc_now()
        if self._stop.is_set():
            return
        if not claim_firing(
            self.client,
            self.keys,
            domain,
            fire_time=fire_time,
            instance=self.instance,
            ttl=CLAIM_TTL,
        ):
            log.info("firing of %s at %s was claimed by another instance", domain, iso(fire_time))
            self.metrics.firings.labels(domain, "claimed_elsewhere").inc()
            self._publish_next_runs()
            return
        self.metrics.firings.labels(domain, "run").inc()
        self._execute(RunRequest(domain, trigger="schedule", fire_time=iso(fire_time)))

    def _execute(self, request: RunRequest) -> RunOutcome:
        with self._lock:
            self._running[request.domain] = self._running.get(request.domain, 0) + 1
        self.metrics.running.labels(request.domain).inc()
        try:
            outcome = self.job.run(request)
        except Exception:
            # A bug in one run must not take the service down; its traceback is logged.
            log.exception("retrain %s [%s] crashed", request.domain, request.run_id)
            outcome = RunOutcome(
                request.run_id,
                request.domain,
                request.trigger,
                "failed",
                "unexpected error: see the service log",
                iso(utc_now()),
                finished_at=iso(utc_now()),
                fire_time=request.fire_time,
            )
        finally:
            self.metrics.running.labels(request.domain).dec()
            with self._lock:
                self._running[request.domain] -= 1
            self._release_deferred(request.domain)
        self.metrics.observe(outcome)
        with self._lock:
            self._outcomes.append(outcome)
        self._publish_next_runs()
        return outcome

    # -- scheduler -----------------------------------------------------------------------
    def _build_scheduler(self) -> BackgroundScheduler:
        grace = self.retrain.misfire_grace_s
        scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": FiringExecutor(max_workers=2 * len(DOMAINS) + 2)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": grace},
        )
        for domain in self.domains:
            setting = f"INFERLOOP_RETRAIN__{domain.upper()}_SCHEDULE"
            trigger = parse_schedule(getattr(self.retrain, f"{domain}_schedule"), setting)
            if trigger is not None:
                scheduler.add_job(
                    self._fire,
                    trigger,
                    args=[domain],
                    id=f"schedule-{domain}",
                    name=f"retrain {domain}",
                )
        scheduler.add_listener(self._on_not_run, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        return scheduler

    def _on_not_run(self, event: JobEvent) -> None:
        if not event.job_id.startswith("schedule-"):
            return
        domain = event.job_id.removeprefix("schedule-")
        if event.code == EVENT_JOB_MISSED:
            log.warning(
                "firing of %s at %s was missed: later than the misfire grace time (%s s)",
                domain,
                getattr(event, "scheduled_run_time", "?"),
                self.retrain.misfire_grace_s,
            )
            self.metrics.firings.labels(domain, "missed").inc()
        else:
            log.warning("firing of %s skipped: its previous run is still going", domain)
            self.metrics.firings.labels(domain, "skipped_running").inc()

    def next_runs(self) -> dict[str, datetime | None]:
        """Each scheduled domain's next fire time."""
        found: dict[str, datetime | None] = {}
        for domain in self.domains:
            job = self.scheduler.get_job(f"schedule-{domain}")
            found[domain] = None if job is None else job.next_run_time
        return found

    def _publish_next_runs(self) -> None:
        for domain, when in self.next_runs().items():
            self.metrics.set_next_run(domain, when)
            try:
                record_next_run(self.client, self.keys, domain, when)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("recording the next run of %s failed: %s", domain, exc)

    # -- presence and health -------------------------------------------------------------
    def _heartbeat(self) -> None:
        info = {
            "domains": list(self.domains),
            "heartbeat_at": time.time(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        try:
            self.client.hset(self.keys.retrain_services(), self.instance, json.dumps(info))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("retrain service heartbeat failed: %s", exc)

    def _leave(self) -> None:
        # Overwritten, not deleted (the retrain ACL user has no HDEL): a heartbeat of 0
        # is as good as gone.
        info = {"domains": list(self.domains), "heartbeat_at": 0, "stopped_at": time.time()}
        try:
            self.client.hset(self.keys.retrain_services(), self.instance, json.dumps(info))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("retrain service could not sign off: %s", exc)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, details): scheduler running, Redis answering, each domain's state."""
        try:
            self.client.ping()
            redis_ok = True
        except (redis.ConnectionError, redis.TimeoutError):
            redis_ok = False
        ok = redis_ok and self.scheduler.running and not self._stop.is_set()
        domains: dict[str, Any] = {}
        if redis_ok:
            for domain in DOMAINS:
                status = read_status(self.client, self.keys, domain, self.retrain.lock_lease_s)
                domains[domain] = {
                    "last_success_at": status.last_success_at,
                    "last_outcome": status.last_run.outcome if status.last_run else None,
                    "last_by_outcome": {
                        name: run.finished_at for name, run in status.last_by_outcome.items()
                    },
                    "next_run_at": status.next_run_at,
                    "running": status.running.describe() if status.running else None,
                }
        body = {
            "status": "ok" if ok else ("stopping" if self._stop.is_set() else "unhealthy"),
            "instance": self.instance,
            "redis": redis_ok,
            "domains": domains,
        }
        return ok, body


def live_services(client: redis.Redis, keys: Keys, max_age_s: float) -> dict[str, dict[str, Any]]:
    """Service instances whose last heartbeat is at most ``max_age_s`` old."""
    now = time.time()
    alive: dict[str, dict[str, Any]] = {}
    for raw_name, raw_info in client.hgetall(keys.retrain_services()).items():
        info = json.loads(raw_info)
        if now - float(info.get("heartbeat_at", 0)) <= max_age_s:
            alive[raw_name.decode() if isinstance(raw_name, bytes) else raw_name] = info
    return alive


def heartbeat_max_age_s(settings: Settings) -> float:
    """How old a heartbeat may be for its instance to count as running."""
    return 3 * settings.retrain.heartbeat_s + READ_BLOCK_S


def _merge(queued: list[Trigger], trigger: Trigger) -> tuple[Trigger, Trigger | None]:
    """(the trigger that waits, the one it supersedes or None) when ``trigger`` joins
    ``queued``: only a waiting trigger asking for the same run is superseded."""
    same = next((t for t in queued if _same_run(t, trigger)), None)
    if same is None or same is trigger:
        return trigger, None
    if _entry_order(same.entry_id) > _entry_order(trigger.entry_id):
        return same, trigger
    return trigger, same


def _same_run(a: Trigger, b: Trigger) -> bool:
    """Whether two triggers ask for the same run (force, seed and parameters)."""
    return (a.force, a.seed, dict(a.params)) == (b.force, b.seed, dict(b.params))


def _entry_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id (``<ms>-<seq>``) as a sortable pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def trigger_request(trigger: Trigger) -> RunRequest:
    """The run ``trigger`` asks for. Its trigger is ``monitor`` for the monitor's (a live
    floor or drift), ``operator`` otherwise; its run id is an operator's random id cut to
    12 characters, or a digest of a monitor's deterministic id (all of whose first 12
    characters are ``monitor-<dom``: every monitor run had the same run id)."""
    by_monitor = trigger.requested_by == MONITOR
    trigger_id = trigger.trigger_id
    return RunRequest(
        trigger.domain,
        trigger=MONITOR if by_monitor else "operator",
        force=trigger.force,
        seed=trigger.seed,
        params=trigger.params,
        run_id=hashlib.sha256(trigger_id.encode()).hexdigest()[:12] if by_monitor
        else trigger_id[:12],
    )  # fmt: skip
