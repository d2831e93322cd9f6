"""The demo: the whole lifecycle of both domains on the local real services.

1. Start Kafka and Redis when they are not running; make a signing key; create the
   topics of this run (every topic and Redis key of a run has its own prefix).
2. Publish the older part of each data set as labelled history and train v1 through the
   real retrain job, which promotes it when it clears the domain's floor. An operator
   runs a deliberately weakened candidate, which the gate refuses, and registers without
   promotion a version that is worse on the current data.
3. Start a worker per domain and the retrain service (on a short schedule), then replay
   the rest of the data as a live stream, with labels coming back after a delay and a
   few hostile messages mixed in.
4. The schedule retrains on the labels that came back; the gate promotes a better v2
   and the workers swap it in. A monitor per domain joins the labels with the versions
   it watches. Mid-stream the operator pauses the domain's schedule and promotes the
   worse version by hand; the monitor finds the paired loss and rolls it back on its
   own; the schedule resumes.
5. Stop what was started and report: per domain, events, predictions per version, dead
   letters, lost events, throughput, latency, the quality of each version (from the
   topics, and as the monitor measured it live), the rollback and any drift alarms.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import (
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    as_completed,
)
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from kafka.errors import KafkaError
from rich.console import Console
from rich.live import Live

from inferloop.connections import admin_client, make_producer
from inferloop.console.auth import hash_token, new_token
from inferloop.demo.collect import collect
from inferloop.demo.live import DomainState, LineView, Monitor, View
from inferloop.demo.monitoring import MonitorLog, Rollback, find_rollback
from inferloop.demo.plan import DATA_SOURCES, WORSE, DemoPlan, DomainPlan
from inferloop.demo.processes import Child, Children
from inferloop.demo.summary import DemoReport, build_report
from inferloop.demo.worse import register_worse
from inferloop.domains.datasets import Dataset, load_dataset
from inferloop.domains.errors import DatasetNotFoundError
from inferloop.domains.replay import ReplayPlan, replay
from inferloop.errors import InferloopError
from inferloop.local.process import free_port
from inferloop.local.services import LocalServices
from inferloop.registry import Registry
from inferloop.registry.signing import generate_key_pair
from inferloop.retrain.job import RetrainJob, RunRequest
from inferloop.settings import Domain, Settings
from inferloop.topics import consumer_group, create_domain_topics, for_settings

log = logging.getLogger(__name__)

# Messages no schema accepts, mixed into the stream so the dead-letter topic has
# something to show: (key, value, the reason the worker should give).
HOSTILE: tuple[tuple[str, bytes], ...] = (
    ("not-json", b"{this is not json"),
    ("not-utf8", b"\xff\xfe\x00garbage"),
    ("deep", b"[" * 5000 + b"]" * 5000),
    ("no-fields", b'{"id": "demo-bad-no-fields"}'),
    ("naive-time", b'{"id": "x", "event_time": "2024-01-01T00:00:00", "schema_version": 1}'),
)


# The deliberately weakened candidate an operator asks for at the end: far too strong a
# regularisation for the text model, three trees instead of 500 for the fraud model.
WEAKENED: dict[str, tuple[str, ...]] = {
    "emails": ("model__C=0.0001",),
    "transactions": ("model__max_iter=3",),
}


# The monitor at the demo's pace (a few minutes of stream, labels 5 s behind): live
# labels only (the history published before it started trained v1; it is no live
# evidence), figures and decisions every second (decisions still come every 5 new
# positives and need 10 discordant pairs), a promotion seen within a second, and a
# short cool-down after a rollback, so the resumed schedule's next candidate is gated
# as usual within the run (seven days by default).
DEMO_MONITOR: dict[str, Any] = {
    "auto_offset_reset": "latest",
    "evaluate_interval_s": 1.0,
    "model_check_interval_s": 1.0,
    "rollback_cooldown_s": 5.0,
}

# After the bad promotion, how long past the end of its stream the demo waits for the
# monitor's rollback (labels come back 5 s behind, then a decision every few positives).
ROLLBACK_GRACE_S = 60.0


# Event times of an interleaved data set: one event every five minutes from here.
INTERLEAVED_START = datetime(2024, 1, 1, tzinfo=UTC)
INTERLEAVED_SPACING = timedelta(minutes=5)


class DemoError(InferloopError): ...


@dataclass
class DomainRun:
    """A domain's data and progress during the run."""

    plan: DomainPlan
    data: Dataset
    v1: int | None = None
    rejected: dict[str, Any] | None = None
    # The version the operator promoted by hand, and the monitor's rollback of it.
    worse: int | None = None
    rollback: Rollback | None = None
    stream_done: threading.Event = field(default_factory=threading.Event)
    operator_done: threading.Event = field(default_factory=threading.Event)
    # When the live stream ran, in seconds since the demo started.
    stream_s: tuple[float, float] | None = None
    error: BaseException | None = None


class Demo:
    """One demo run; :meth:`run` does it all and returns the domains it ran."""

    def __init__(
        self, base: Settings, plan: DemoPlan, console: Console, *, local_services: bool = True
    ) -> None:
        self.base = base
        # False: use the Kafka and Redis that ``base`` names as they are (the tests' own).
        self.local_services = local_services
        self.plan = plan
        self.console = console
        self.local = LocalServices.from_settings(base.services)
        self.started_services: list[str] = []
        self.children = Children()
        self.started = time.monotonic()
        self.started_at = datetime.now(UTC)
        self.settings = base
        self.runs: dict[Domain, DomainRun] = {}
        # One fit in this process at a time: two in threads fight over the GIL (and the
        # fraud model's OpenMP threads spin), which made each several times slower; the
        # other domain's history, worker start-up and operator runs (child processes)
        # overlap the fit instead.
        self._fitting = threading.Lock()

    # -- set-up --------------------------------------------------------------------
    def start_services(self) -> None:
        """Start Kafka and Redis unless they run; point this run's settings at them."""
        if not self.local_services:
            self.settings = self._run_settings(
                self.base.kafka.bootstrap_servers, self.base.redis.url
            )
            return
        before = {s.name for s in self.local.status() if s.running}
        self.started_services = [n for n in ("kafka", "redis") if n not in before]
        states = self.local.up()
        for s in states:
            how = "started" if s.started_now else "already running"
            self.console.print(f"{s.name} {s.version} at {s.address}: {how}")
        self.settings = self._run_settings(self.local.kafka.address, self.local.redis.url)

    def _run_settings(self, bootstrap_servers: str, redis_url: str) -> Settings:
        keys = self.plan.out_dir / "keys"
        pair = generate_key_pair(keys, "demo-signing")
        schedules = {f"{d}_schedule": "off" for d in ("emails", "transactions")}
        schedules |= {f"{d.domain}_schedule": d.schedule for d in self.plan.domains}
        base = self.base
        return base.model_copy(
            update={
                "kafka": base.kafka.model_copy(update={"bootstrap_servers": bootstrap_servers}),
                "redis": base.redis.model_copy(
                    update={"url": redis_url, "key_prefix": self.plan.key_prefix}
                ),
                "topics": base.topics.model_copy(update={"prefix": self.plan.topic_prefix}),
                "registry": base.registry.model_copy(
                    update={
                        "signing_key_path": pair.private_path,
                        "verify_key_paths": (pair.public_path,),
                    }
                ),
                "monitor": base.monitor.model_copy(update=DEMO_MONITOR),
                "retrain": base.retrain.model_copy(
                    update={
                        **schedules,
                        "min_new_labels": 50,
                        # Three forward folds rather than five: a shorter demo, the
                        # same recipe otherwise.
                        "folds": 3,
                        "reports_dir": self.plan.out_dir / "reports",
                        "snapshot_dir": self.plan.out_dir / "snapshots",
                        "metrics_port": free_port(),
                    }
                ),
            }
        )

    def load_data(self, pool: Executor | None = None) -> None:
        """Load each domain's data set (in ``pool``'s processes, side by side, when given:
        parsing SpamAssassin's files is Python's work, which threads would take in turn);
        a missing one drops its domain, with directions."""
        data_dir = self.base.data_dir
        loading = {
            d.domain: pool.submit(load_dataset, d.dataset, data_dir) if pool else None
            for d in self.plan.domains
        }
        loaded = [self._load(d, loading[d.domain]) for d in self.plan.domains]
        self.runs = {run.plan.domain: run for run in loaded if run is not None}
        if not self.runs:
            wanted = "; ".join(DATA_SOURCES[d.dataset] for d in self.plan.domains)
            raise DemoError(
                f"no data set found under {data_dir}: get {wanted}, and point "
                "--data-dir (or INFERLOOP_DATA_DIR) at the folder that holds them"
            )

    def _load(self, domain_plan: DomainPlan, loading: Future[Dataset] | None) -> DomainRun | None:
        try:
            if loading is None:
                data = load_dataset(domain_plan.dataset, self.base.data_dir)
            else:
                data = loading.result()
        except DatasetNotFoundError as exc:
            self.console.print(
                f"[yellow]{domain_plan.domain}: skipped, {exc}. Get it from "
                f"{DATA_SOURCES[domain_plan.dataset]} and point --data-dir (or "
                f"INFERLOOP_DATA_DIR) at the folder that holds it.[/yellow]"
            )
            return None
        if domain_plan.interleave:
            data = data.interleaved(INTERLEAVED_START, INTERLEAVED_SPACING)
        return DomainRun(domain_plan, data)

    def create_topics(self) -> None:
        """The four topics of each domain of this run."""
        for domain in self.runs:
            create_domain_topics(self.settings, domain)

    # -- v1 and the operator's versions ----------------------------------------------
    def prepare(self) -> None:
        """Everything before the stream, what is independent side by side (a run spent
        most of its 13.5 minutes here, one step after the other): the data sets load
        while the services start; then each domain, in a thread of its own, publishes
        its history, trains v1, starts its worker and monitor (they come up while the
        operator works) and runs the operator's part. Their fits and the operator's
        runs (child processes) overlap; the fits in this process take turns."""
        n = len(self.plan.domains)
        # A process per data set ("spawn": this process has threads that fork would copy
        # mid-step), then a thread per domain.
        loaders = ProcessPoolExecutor(max_workers=n, mp_context=get_context("spawn"))
        with loaders, ThreadPoolExecutor(max_workers=n) as pool:
            loading = pool.submit(self.load_data, loaders)
            self.start_services()
            loading.result()
            self.create_topics()
            self._start_console()
            set_ups = [pool.submit(self._prepare_domain, d) for d in self.runs]
            for done in as_completed(set_ups):
                done.result()
        self.start_processes()

    def _prepare_domain(self, domain: Domain) -> None:
        with Registry.from_settings(self.settings) as registry:
            self._seed(domain, registry)
            self.start_worker(domain)
            self.start_monitor(domain)
            self._prepare_operator(domain, registry)

    def _seed(self, domain: Domain, registry: Registry) -> None:
        """Publish the older part as labelled history and train v1 on it."""
        run = self.runs[domain]
        plan = ReplayPlan(labels_only=True, label_delay_s=0.0, end_fraction=run.plan.seed_end)
        summary = replay(self.settings, run.data, plan)
        self.console.print(
            f"{domain}: {summary.labels_sent} labelled examples published as history"
        )
        job = RetrainJob(self.settings, registry, role="demo")
        with self._fitting:
            outcome = job.run(RunRequest(domain=domain, trigger="demo-seed", force=True))
        self.console.print(f"{domain}: {outcome.summary_line()}", markup=False)
        if outcome.outcome != "promoted":
            raise DemoError(f"{domain}: v1 was not promoted: {outcome.reason}")
        run.v1 = outcome.version

    # -- the live part -------------------------------------------------------------
    def start_processes(self) -> None:
        """The retrain service of each domain (its worker and monitor already run), then
        wait until every worker holds its partitions and every monitor reads."""
        for domain in self.runs:
            self._start_retrain(domain)
        self.await_workers()
        self.await_monitors()

    def start_worker(self, domain: Domain) -> None:
        """Start the domain's worker (its processes, each serving metrics on a port)."""
        argv = ["worker", "run", domain, "--processes", str(self.plan.processes)]
        # Each worker process serves its metrics on a port of its own.
        ports = {"INFERLOOP_WORKER__METRICS_PORT": "0"}
        log_path = self.plan.out_dir / "logs" / f"worker-{domain}.log"
        self.children.start(
            Child(f"worker-{domain}", argv, log_path), self.settings.to_env() | ports
        )

    def start_monitor(self, domain: Domain) -> None:
        """Start the domain's monitor."""
        argv = ["monitor", "serve", "--domain", domain, "--metrics-port", "0"]
        log_path = self.plan.out_dir / "logs" / f"monitor-{domain}.log"
        self.children.start(Child(f"monitor-{domain}", argv, log_path), self.settings.to_env())

    def _start_console(self) -> None:
        """The operator console on a free local port, with an operator token made for
        this run; its address and token are printed (and in the console's log)."""
        token, port = new_token(), free_port()
        env = self.settings.to_env() | {
            "INFERLOOP_CONSOLE__PORT": str(port),
            "INFERLOOP_CONSOLE__OPERATOR_TOKEN_HASHES": hash_token("demo", token),
        }
        log_path = self.plan.out_dir / "logs" / "console.log"
        self.children.start(Child("console", ["console", "serve"], log_path), env)
        self.console.print(
            f"console: http://127.0.0.1:{port}/ (log in with the token {token})", markup=False
        )

    def _start_retrain(self, domain: Domain) -> None:
        """The retrain service of ``domain`` (one per domain, so that an operator can
        pause one domain's schedule); any of them runs an operator's trigger."""
        argv = ["retrain", "serve", "--domain", domain]
        port = {"INFERLOOP_RETRAIN__METRICS_PORT": str(free_port())}
        log_path = self.plan.out_dir / "logs" / f"retrain-{domain}.log"
        self.children.start(
            Child(f"retrain-{domain}", argv, log_path), self.settings.to_env() | port
        )

    def await_monitors(self, timeout_s: float = 90.0) -> None:
        """Until each domain's monitor has opened its reader (it logs that it started):
        it reads from the end of the labels, so the stream must not begin before; and
        until each retrain service runs its schedule (its workers, started earlier, no
        longer give it the minute it had to come up before the stream)."""
        logs = self.plan.out_dir / "logs"
        waiting = {
            f"monitor of {d}": (logs / f"monitor-{d}.log", f"monitor of {d} started")
            for d in self.runs
        } | {
            f"retrain service of {d}": (logs / f"retrain-{d}.log", f"start: schedules for {d}")
            for d in self.runs
        }
        self._await_lines(waiting, timeout_s)
        # Its consumers find the end offsets on their first poll, right after that line.
        time.sleep(2.0)

    def _await_lines(self, waiting: dict[str, tuple[Path, str]], timeout_s: float) -> None:
        """Until each log file holds its line."""
        deadline = time.monotonic() + timeout_s
        while waiting:
            for name, (path, line) in list(waiting.items()):
                if path.exists() and line in path.read_text(errors="replace"):
                    del waiting[name]
            crashed = self.children.crashed()
            if crashed:
                raise DemoError(f"stopped unexpectedly: {crashed[0].name} ({crashed[0].log_path})")
            if time.monotonic() > deadline:
                raise DemoError(f"the {', '.join(waiting)} did not start in time")
            time.sleep(0.5)

    def await_workers(self, timeout_s: float = 120.0) -> None:
        """Until every worker process has joined its group and holds partitions, so that
        the stream's latency figures measure scoring, not the workers' start-up."""
        groups = {consumer_group(self.settings, d): d for d in self.runs}
        deadline = time.monotonic() + timeout_s
        with admin_client(self.settings.kafka) as admin:
            while True:
                try:
                    described = admin.describe_groups(list(groups))
                except KafkaError as exc:
                    if not exc.retriable:  # e.g. no coordinator yet on a fresh broker
                        raise
                    described = {}
                waiting = [
                    groups[g]
                    for g in groups
                    if (info := described.get(g, {})).get("group_state") != "Stable"
                    or len(info.get("members") or ()) < self.plan.processes
                ]
                if not waiting:
                    break
                crashed = self.children.crashed()
                if crashed:
                    raise DemoError(
                        f"stopped unexpectedly: {crashed[0].name} ({crashed[0].log_path})"
                    )
                if time.monotonic() > deadline:
                    raise DemoError(
                        f"workers of {', '.join(waiting)} not ready after {timeout_s:.0f} s"
                    )
                time.sleep(0.5)
        self.console.print(f"workers of {', '.join(self.runs)} have joined their groups")

    def stream(self, monitor: Monitor, live: View) -> None:
        """Replay the rest of each data set while the view follows it."""
        self._send_hostile()
        threads = [
            threading.Thread(target=target, args=(run, monitor), daemon=True)
            for run in self.runs.values()
            for target in (self._stream_domain, self._operate)
        ]
        for thread in threads:
            thread.start()
        self._watch(
            monitor,
            live,
            until=lambda: all(
                r.stream_done.is_set() and r.operator_done.is_set() for r in self.runs.values()
            ),
        )
        for run in self.runs.values():
            if run.error is not None:
                raise DemoError(f"{run.plan.domain}: {run.error}") from run.error

    def _stream_domain(self, run: DomainRun, monitor: Monitor) -> None:
        state = monitor.states[run.plan.domain]
        plan = ReplayPlan(
            rate_per_s=run.plan.rate_per_s,
            label_delay_s=self.plan.label_delay_s,
            start_fraction=run.plan.seed_end,
            end_fraction=run.plan.stream_end,
        )
        n = len(run.data)
        state.events_total = int(plan.end_fraction * n) - int(plan.start_fraction * n)
        state.stage = "streaming"

        def progress(events: int, labels: int) -> None:
            state.events_sent, state.labels_sent = events, labels

        began = time.monotonic() - self.started
        try:
            replay(self.settings, run.data, plan, progress=progress, progress_every=200)
            state.stage = "stream done"
            run.stream_s = (began, time.monotonic() - self.started)
        except (InferloopError, OSError) as exc:  # the main thread raises it
            run.error = DemoError(f"the replay failed: {exc}")
        finally:
            run.stream_done.set()

    def _send_hostile(self) -> None:
        producer = make_producer(self.settings.kafka, acks="all")
        try:
            for domain in self.runs:
                topic = for_settings(self.settings, domain).events
                for name, value in HOSTILE:
                    producer.send(topic, key=f"demo-bad-{name}".encode(), value=value)
            producer.flush(timeout=30)
        finally:
            producer.close()

    def _watch(
        self,
        monitor: Monitor,
        live: View,
        until: Callable[[], bool],
        deadline_s: float | None = -1.0,
    ) -> None:
        if deadline_s == -1.0:
            deadline_s = self.plan.timeout_s
        deadline = None if deadline_s is None else self.started + deadline_s
        while not until():
            crashed = self.children.crashed()
            if crashed:
                names = ", ".join(f"{c.name} (log {c.log_path})" for c in crashed)
                raise DemoError(f"stopped unexpectedly: {names}")
            if deadline is not None and time.monotonic() > deadline:
                raise DemoError(f"not done within {self.plan.timeout_s:.0f} s")
            self._refresh(monitor)
            live.update(monitor.table(time.monotonic() - self.started))
            time.sleep(1.0)
        monitor.refresh()
        live.update(monitor.table(time.monotonic() - self.started))

    def _refresh(self, monitor: Monitor) -> None:
        # A slow broker must not end the run from the view: the replay and the workers
        # ride out what they can and say so.
        try:
            monitor.refresh()
        except KafkaError as exc:
            log.warning("the live view skipped a refresh: %s", exc)

    # -- the end -------------------------------------------------------------------
    def settle(self, monitor: Monitor, live: View) -> None:
        """Wait for a v2 per domain (the schedule decides) and for the workers to catch up.

        With ``plan.await_promotion`` off, any scheduled candidate will do, promoted or
        not (the tests' small data sets leave the gate no real win to find).
        """

        def promoted_and_caught_up() -> bool:
            for domain, run in self.runs.items():
                state = monitor.states[domain]
                if self.plan.await_promotion:
                    # (A version promoted by hand and not rolled back in time is a
                    # champion after v1 too: nothing more to wait for; the summary says so.)
                    champion = state.champion
                    if champion is None or run.v1 is None or champion <= run.v1:
                        state.stage = "waiting for v2"
                        return False
                elif state.versions < 2:
                    state.stage = "waiting for a scheduled candidate"
                    return False
                if state.lag:
                    state.stage = "catching up"
                    return False
                state.stage = "v2 in service"
            return True

        self._watch(monitor, live, until=promoted_and_caught_up)

    @contextmanager
    def live_view(self) -> Iterator[tuple[Monitor, View]]:
        """The monitor and the view (a live table on a terminal, lines otherwise)."""
        with Registry.from_settings(self.settings) as registry:
            monitor = Monitor(self.settings, registry, tuple(self.runs))
            try:
                if self.console.is_terminal:
                    with Live(console=self.console, refresh_per_second=2) as live:
                        yield monitor, live
                else:
                    yield monitor, LineView(self.console)
            finally:
                monitor.close()

    def _prepare_operator(self, domain: Domain, registry: Registry) -> None:
        """Before the stream: the operator runs a deliberately weakened candidate, which
        the gate refuses, and registers a version worse on the current data without
        promoting it (kept for later: promoting it is the mistake the monitor catches)."""
        run = self.runs[domain]
        run.rejected = r = self._weakened(domain)
        self.console.print(
            f"{domain}: weakened candidate v{r.get('version')}: {r.get('outcome')}, "
            f"{r.get('reason')}",
            markup=False,
        )
        plan, seed = WORSE[domain], self.settings.retrain.seed
        with self._fitting:
            run.worse = register_worse(registry, run.data, plan, seed).version
        self.console.print(
            f"{domain}: v{run.worse} registered, not promoted: {plan.why}", markup=False
        )

    def _weakened(self, domain: Domain) -> dict[str, Any]:
        """The operator's weakened run (in its own process, as ``inferloop retrain run``
        does with no service running); the gate compares it with the champion on the
        same holdout and refuses it."""
        argv = ["retrain", "run", domain, "--force", "--in-process", "--json"]
        for param in WEAKENED[domain]:
            argv += ["--param", param]
        result: dict[str, Any] = {}
        self.run_operator(argv, result)
        if "error" in result:
            raise DemoError(f"{domain}: the weakened run failed: {result['error']}")
        return dict(result["outcome"])

    def _operate(self, run: DomainRun, monitor: Monitor) -> None:
        """Once ``operator_at`` of the domain's stream was sent: pause the domain's
        schedule (stop its retrain service; a fit in progress gets its grace to finish),
        promote by hand the version registered before the stream, wait for the monitor
        to roll it back, resume the schedule. Runs in a thread; what fails is raised by
        the main thread."""
        domain, state = run.plan.domain, monitor.states[run.plan.domain]
        try:
            while not run.stream_done.is_set() and (
                not state.events_total
                or state.events_sent < run.plan.operator_at * state.events_total
            ):
                time.sleep(0.5)
            state.stage = "schedule paused"
            self.children.stop(f"retrain-{domain}")
            try:
                self._promote_worse(run, state)
                self._await_rollback(run, state)
            finally:
                self._start_retrain(domain)
        except Exception as exc:  # raised again by the main thread
            log.exception("%s: the operator's part failed", domain)
            run.error = exc
        finally:
            run.operator_done.set()

    def _promote_worse(self, run: DomainRun, state: DomainState) -> None:
        """Promote the worse version by hand, as an operator would, with ``inferloop
        registry promote``."""
        domain, worse = run.plan.domain, run.worse
        reason = f"demo: promoted by hand although worse ({WORSE[domain].why})"
        argv = ["registry", "promote", domain, str(worse), "--reason", reason, "--json"]
        result: dict[str, Any] = {}
        self.run_operator(argv, result)
        if "error" in result:
            raise DemoError(f"promoting v{worse} by hand failed: {result['error']}")
        state.stage = f"v{worse} promoted by hand"
        self.console.print(f"{domain}: v{worse} promoted by hand (worse on purpose)")

    def _await_rollback(self, run: DomainRun, state: DomainState) -> None:
        """Until the monitor rolls the worse version back, or the stream has been over for
        ``ROLLBACK_GRACE_S``."""
        domain, worse = run.plan.domain, run.worse
        assert worse is not None
        state.stage = f"v{worse} on probation"
        ended: float | None = None
        with Registry.from_settings(self.settings) as registry:
            while True:
                run.rollback = find_rollback(registry.history(domain, limit=1000), worse)
                if run.rollback is not None:
                    break
                if run.stream_done.is_set():
                    ended = ended or time.monotonic()
                    if time.monotonic() - ended > ROLLBACK_GRACE_S:
                        self.console.print(
                            f"[yellow]{domain}: v{worse} was not rolled back within "
                            f"{ROLLBACK_GRACE_S:.0f} s of the stream's end[/yellow]"
                        )
                        return
                time.sleep(0.5)
        r = run.rollback
        state.stage = f"v{worse} rolled back"
        self.console.print(
            f"{domain}: the monitor rolled v{worse} back to v{r.to_version} after "
            f"{r.seconds:.1f} s, {r.labelled} labelled events ({r.positives} positives)",
            markup=False,
        )

    def run_operator(self, argv: list[str], result: dict[str, Any]) -> None:
        """Run an operator's ``inferloop`` command; its JSON outcome (or its error) goes
        into ``result``."""
        command = [sys.executable, "-P", "-m", "inferloop", *argv]
        done = subprocess.run(
            command, env=os.environ | self.settings.to_env(), capture_output=True, text=True,
            check=False,
        )  # fmt: skip
        if done.returncode not in (0, 1):
            result["error"] = (done.stderr or done.stdout).strip()[-500:]
            return
        try:
            result["outcome"] = json.loads(done.stdout)
        except json.JSONDecodeError:
            result["error"] = (done.stderr or done.stdout).strip()[-500:]

    def follow(self, monitor: Monitor, live: View) -> None:
        """Keep everything running and the view live until Ctrl-C."""
        self.console.print("following: Ctrl-C stops the demo and prints the summary")
        with contextlib.suppress(KeyboardInterrupt):
            self._watch(monitor, live, until=lambda: False, deadline_s=None)

    def report(self, monitor_logs: dict[Domain, MonitorLog]) -> DemoReport:
        """Read the topics and the registry back and write the summary and plots."""
        records = {domain: collect(self.settings, domain) for domain in self.runs}
        with Registry.from_settings(self.settings) as registry:
            return build_report(
                self.plan.out_dir, records, registry, self.started_at,
                time.monotonic() - self.started,
                streams={d: r.stream_s for d, r in self.runs.items() if r.stream_s},
                monitor_logs=monitor_logs,
                rollbacks={d: r.rollback for d, r in self.runs.items()},
            )  # fmt: skip

    def run(self) -> DemoReport:
        """The whole demo; what it started is stopped on the way out, whatever happens."""
        try:
            self.prepare()
            with self.live_view() as (monitor, live):
                self.stream(monitor, live)
                self.settle(monitor, live)
                logs = {d: monitor.states[d].monitor for d in self.runs}
                if self.plan.follow:
                    self.follow(monitor, live)
            self.children.stop_all()
            return self.report(logs)
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop the children, then the services this run started."""
        codes = self.children.stop_all()
        for name, code in codes.items():
            if code not in (0, None):
                self.console.print(f"[yellow]{name} exited with {code}[/yellow]")
        if self.started_services:
            self.local.down()
