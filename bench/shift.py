"""The shift case, end to end on a real Kafka and Redis (issues 32 and 33, item 4).

v1 is trained on the SMS collection alone (its labels published as history, one retrain
run). A worker, ``monitor serve`` and the retrain service run as child processes; then
SpamAssassin's older half is streamed live with ``--event-time send`` and labels 20 s
behind. The run measures labelled events and seconds from the stream's start to the
monitor's live-quality alarm, to its retrain trigger and to each promotion, all read from
the monitor's status key and the registry's history (never recomputed here); then every
version that was champion, and an offline model trained on the older half alone, are
scored on SpamAssassin's newer half, which none of them trained on.

    .venv/bin/python -m bench.shift [--variant hourly|every60] [--data-dir DIR] [--out DIR]

``hourly``: the retrain service on its default schedule (``1h``), so any new champion
within the run comes from the monitor's trigger. ``every60``: a retrain every 60 s.
The run starts its own Kafka and Redis (``inferloop.local``) on free ports under
``--out``, and writes ``results.md`` and ``results.json`` there (``bench.summary``).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from bench.summary import source_facts, write_summary
from inferloop.demo.processes import Child, Children
from inferloop.domains import get_domain, training
from inferloop.domains.datasets import Dataset, load_dataset
from inferloop.domains.metrics import f1_at_fpr
from inferloop.domains.replay import ReplayPlan, replay, selection
from inferloop.errors import InferloopError
from inferloop.keys import Keys
from inferloop.local.process import free_port
from inferloop.local.services import LocalServices
from inferloop.monitor.state import read_status
from inferloop.registry import Registry
from inferloop.registry.entities import HistoryEntry
from inferloop.registry.serving import activate
from inferloop.registry.signing import generate_key_pair
from inferloop.retrain.job import RetrainJob, RunRequest
from inferloop.settings import Domain, Settings
from inferloop.topics import create_domain_topics

log = logging.getLogger("bench.shift")

DOMAIN: Domain = "emails"
SCHEDULES = {"hourly": "1h", "every60": "60s"}
LABEL_DELAY_S = 20.0
# Events per second of the live stream: SpamAssassin's older half (3,023 mails) in
# about four minutes.
RATE_PER_S = 12.0
# After the stream: labels still come back for LABEL_DELAY_S, then a triggered or
# scheduled run may be fitting; wait for it this long at most.
SETTLE_S = 240.0
# The operating point #33 judges at: at most 1 % of ham flagged.
MAX_HAM_FLAGGED = 0.01


# -- the summary logic (pure) ---------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    """What was known at ``t_s`` seconds after the stream started."""

    t_s: float
    events: int  # events sent by the replay
    labels_sent: int  # labels sent by the replay
    labelled: int  # labels the monitor has taken in (its status' checks.labels)


@dataclass
class Timeline:
    """Samples in time order, and the moments that matter, found from them."""

    started_at: float  # wall clock (time.time()) of the stream's start
    samples: list[Sample] = field(default_factory=list)

    def at(self, t_s: float) -> Sample:
        """The last sample at or before ``t_s`` (the first one before any)."""
        found = self.samples[0]
        for sample in self.samples:
            if sample.t_s > t_s:
                break
            found = sample
        return found

    def moment(self, wall: float, **extra: Any) -> dict[str, Any]:
        """A moment at wall-clock time ``wall``: its seconds from the stream's start and
        the counts known then."""
        t_s = wall - self.started_at
        sample = self.at(t_s)
        return {"t_s": round(t_s, 1), "events": sample.events, "labelled": sample.labelled,
                "labels_sent": sample.labels_sent, **extra}  # fmt: skip


def first_alarm(statuses: Sequence[Mapping[str, Any]], kind: str) -> dict[str, Any] | None:
    """The first status (oldest first) holding an alarm of ``kind``: when it was
    evaluated, the labels the monitor had taken in, and the alarm's detail."""
    for status in statuses:
        for alarm in status.get("alarms") or ():
            if alarm.get("kind") == kind:
                return {"at": status["evaluated_at"], "labelled": _labels(status), "alarm": alarm}
    return None


def first_action(statuses: Sequence[Mapping[str, Any]], action: str) -> dict[str, Any] | None:
    """The first status holding an action of kind ``action`` (e.g. ``TriggerRetrain``)."""
    for status in statuses:
        for done in status.get("actions") or ():
            if done.get("action") == action:
                return {"at": status["evaluated_at"], "labelled": _labels(status), "action": done}
    return None


def _labels(status: Mapping[str, Any]) -> int:
    return int((status.get("checks") or {}).get("labels", 0))


def promotions(history: Sequence[HistoryEntry], since: datetime) -> list[HistoryEntry]:
    """Moves of the champion alias (promotions and rollbacks) at or after ``since``,
    oldest first."""
    moves = [
        e for e in history
        if e.alias == "champion" and e.to_target is not None and e.time >= since
    ]  # fmt: skip
    return sorted(moves, key=lambda e: e.time)


def champions(v1: int, moves: Sequence[HistoryEntry]) -> list[int]:
    """Every version that was champion, in order (v1 first, no repeats)."""
    seen = [v1]
    for move in moves:
        assert move.to_target is not None
        if move.to_target.version not in seen:
            seen.append(move.to_target.version)
    return seen


def offline_figures(
    y: np.ndarray[Any, Any], scores: np.ndarray[Any, Any], threshold: float
) -> dict[str, float]:
    """F1 and ham flagged at ``threshold``, and F1 at <= 1 % ham flagged."""
    spec = get_domain(DOMAIN)
    m = spec.metrics(y, scores, threshold)
    return {
        "threshold": round(float(threshold), 6),
        "f1": round(float(m["f1"]), 4),
        "ham_flagged": round(float(m["fpr"]), 4),
        "recall": round(float(m["recall"]), 4),
        "auprc": round(float(m["auprc"]), 4),
        "f1_at_1pct": round(float(f1_at_fpr(y, scores, MAX_HAM_FLAGGED)), 4),
    }


def milestones(
    timeline: Timeline,
    statuses: Sequence[Mapping[str, Any]],
    moves: Sequence[HistoryEntry],
    runs: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The alarm, the trigger, each retrain run and each champion move, each with its
    seconds from the stream's start and the events and labelled events known then (the
    labelled count at the alarm and trigger is the monitor's own, from that status)."""
    out: dict[str, Any] = {}
    for name, found in (
        ("alarm", first_alarm(statuses, "floor")),
        ("trigger", first_action(statuses, "TriggerRetrain")),
    ):
        if found is None:
            out[name] = None
            continue
        wall = datetime.fromisoformat(found["at"]).timestamp()
        moment = timeline.moment(wall)
        moment["labelled"] = found["labelled"]
        out[name] = moment
    out["runs"] = [
        timeline.moment(r["created_at"], version=r["version"], trigger=r["trigger"],
                        decision=r["decision"])
        for r in runs
    ]  # fmt: skip
    out["moves"] = [
        timeline.moment(
            m.time.timestamp(),
            action=m.action,
            version=m.to_target.version if m.to_target else None,
            actor=m.actor,
            reason=m.reason[:160],
        )
        for m in moves
    ]
    return out


# -- the run ----------------------------------------------------------------------------------
@dataclass
class Stream:
    """The live replay's progress, written by its thread."""

    events: int = 0
    labels: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    ended_at: float | None = None
    error: BaseException | None = None


class ShiftRun:
    """One run of the shift case; :meth:`run` returns its results."""

    def __init__(
        self, variant: str, data_dir: Path, out: Path, train_window_labels: int | None = None
    ) -> None:
        self.variant = variant
        self.train_window_labels = train_window_labels
        self.data_dir = data_dir.resolve()
        self.out = out.resolve()
        self.children = Children()
        self.statuses: list[dict[str, Any]] = []
        self.stream = Stream()

    @contextmanager
    def services(self) -> Iterator[Settings]:
        """This run's own Kafka and Redis on free ports, and settings pointing at them."""
        base = Settings(data_dir=self.data_dir)
        section = base.services.model_copy(
            update={
                "state_dir": self.out / "services",
                "kafka_port": free_port(),
                "kafka_controller_port": free_port(),
                "redis_port": free_port(),
            }
        )
        local = LocalServices.from_settings(section)
        local.up()
        try:
            yield self._settings(base, local)
        finally:
            self.children.stop_all()
            local.down()

    def _settings(self, base: Settings, local: LocalServices) -> Settings:
        pair = generate_key_pair(self.out / "keys", "shift-signing", overwrite=True)
        return base.model_copy(
            update={
                "kafka": base.kafka.model_copy(update={"bootstrap_servers": local.kafka.address}),
                "redis": base.redis.model_copy(
                    update={"url": local.redis.url, "key_prefix": "shift"}
                ),
                "topics": base.topics.model_copy(update={"prefix": "shift-"}),
                "registry": base.registry.model_copy(
                    update={
                        "signing_key_path": pair.private_path,
                        "verify_key_paths": (pair.public_path,),
                    }
                ),
                # Live labels only: the SMS history trained v1, it is no live evidence.
                # Every other monitor setting is its default.
                "monitor": base.monitor.model_copy(update={"auto_offset_reset": "latest"}),
                "retrain": base.retrain.model_copy(
                    update={
                        "emails_schedule": SCHEDULES[self.variant],
                        "emails_train_window_labels": self.train_window_labels,
                        "transactions_schedule": "off",
                        "reports_dir": self.out / "reports",
                        "snapshot_dir": self.out / "snapshots",
                        "metrics_port": free_port(),
                    }
                ),
            }
        )

    def seed(self, settings: Settings, registry: Registry) -> int:
        """SMS as labelled history (``replay emails --dataset sms --labels-only``), then
        one retrain run: v1."""
        sms = load_dataset("sms", settings.data_dir)
        create_domain_topics(settings, DOMAIN)
        replay(settings, sms, ReplayPlan(labels_only=True, label_delay_s=0.0))
        job = RetrainJob(settings, registry, role="demo")
        outcome = job.run(RunRequest(domain=DOMAIN, trigger="shift-seed", force=True))
        if outcome.outcome != "promoted" or outcome.version is None:
            raise SystemExit(f"v1 was not promoted: {outcome.reason}")
        log.info("v1 = v%d, trained on SMS", outcome.version)
        return outcome.version

    def start(self, settings: Settings) -> None:
        """A worker, the monitor and the retrain service, each in its own process."""
        env, logs = settings.to_env(), self.out / "logs"
        commands = {
            "worker": ["worker", "run", DOMAIN],
            "monitor": ["monitor", "serve", "--domain", DOMAIN, "--metrics-port", "0"],
            "retrain": ["retrain", "serve", "--domain", DOMAIN],
        }
        for name, argv in commands.items():
            port = {"INFERLOOP_WORKER__METRICS_PORT": "0"} if name == "worker" else {}
            self.children.start(Child(name, argv, logs / f"{name}.log"), env | port)
        self._await_line(logs / "monitor.log", f"monitor of {DOMAIN} started")
        # Its consumers find the end offsets on their first poll, right after that line.
        time.sleep(5.0)

    def _await_line(self, path: Path, line: str, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not (path.exists() and line in path.read_text(errors="replace")):
            self._check_children()
            if time.monotonic() > deadline:
                raise SystemExit(f"no '{line}' in {path} within {timeout_s:.0f} s")
            time.sleep(0.5)

    def _check_children(self) -> None:
        crashed = self.children.crashed()
        if crashed:
            raise SystemExit(f"{crashed[0].name} stopped (log {crashed[0].log_path})")

    def _stream(self, settings: Settings, data: Dataset) -> None:
        plan = ReplayPlan(rate_per_s=RATE_PER_S, label_delay_s=LABEL_DELAY_S,
                          end_fraction=0.5, event_time="send")  # fmt: skip

        def progress(events: int, labels: int) -> None:
            self.stream.events, self.stream.labels = events, labels

        try:
            replay(settings, data, plan, progress=progress, progress_every=10)
        except (InferloopError, OSError) as exc:  # the main thread reports it
            self.stream.error = exc
        finally:
            self.stream.ended_at = time.time()
            self.stream.done.set()

    def live(self, settings: Settings, registry: Registry, data: Dataset) -> Timeline:
        """Stream the older half while sampling the replay and the monitor's status."""
        keys = Keys(settings.redis.key_prefix)
        timeline = Timeline(started_at=time.time())
        thread = threading.Thread(target=self._stream, args=(settings, data), daemon=True)
        thread.start()
        while not self._settled(registry, keys):
            self._check_children()
            status = read_status(registry.client, keys, DOMAIN)
            if status is not None and (
                not self.statuses or status["evaluated_at"] != self.statuses[-1]["evaluated_at"]
            ):
                self.statuses.append(_kept(status))
            labelled = _labels(self.statuses[-1]) if self.statuses else 0
            t_s = time.time() - timeline.started_at
            timeline.samples.append(Sample(round(t_s, 1), self.stream.events,
                                           self.stream.labels, labelled))  # fmt: skip
            time.sleep(1.0)
        if self.stream.error is not None:
            raise SystemExit(f"the replay failed: {self.stream.error}")
        return timeline

    def _settled(self, registry: Registry, keys: Keys) -> bool:
        """Whether the stream is over, its labels came back and were taken in, and no
        retrain is running (or SETTLE_S passed since the stream ended)."""
        ended = self.stream.ended_at
        if ended is None:
            return False
        since = time.time() - ended
        if since < LABEL_DELAY_S + 20.0:
            return False
        running = registry.client.exists(keys.retrain_lock(DOMAIN))
        return not running or since > SETTLE_S

    def offline(
        self, registry: Registry, data: Dataset, versions: Sequence[int], last: int | None = None
    ) -> dict[str, Any]:
        """Each champion, the last registered version (``last``, when no champion: the
        newest candidate, whatever its gate or the monitor made of it), and a model
        trained on the older half alone, on the newer half."""
        spec = get_domain(DOMAIN)
        n = len(data)
        older, newer = np.arange(0, n // 2), np.arange(n // 2, n)
        events = [data.events[int(i)] for i in newer]
        y = np.asarray(data.y[newer])
        scored: dict[str, Any] = {}
        for version in versions:
            model = activate(registry.load(DOMAIN, version), spec)
            scored[f"v{version}"] = offline_figures(y, model.score(events), model.threshold)
        if last is not None and last not in versions:
            model = activate(registry.load(DOMAIN, last), spec)
            figures = offline_figures(y, model.score(events), model.threshold)
            scored[f"v{last} (last registered, not champion)"] = figures
        train = data.subset(older)
        with threadpool_limits(limits=1):
            fitted = training.fit(spec, spec.to_rows(list(train.events)), train.y, seed=42, folds=5)
        baseline = fitted.pipeline.predict_proba(spec.to_rows(events))[:, 1]
        scored["older half alone"] = offline_figures(y, baseline, fitted.threshold)
        return {"newer_half": len(y), "newer_half_spam": int(y.sum()), "models": scored}

    def run(self) -> dict[str, Any]:
        """The whole case; its results (small: the samples go to figures.json)."""
        load_start = _load()
        with self.services() as settings, Registry.from_settings(settings) as registry:
            v1 = self.seed(settings, registry)
            data = load_dataset("spamassassin", settings.data_dir)
            began = datetime.now(UTC)
            self.start(settings)
            timeline = self.live(settings, registry, data)
            self.children.stop_all()
            moves = promotions(registry.history(DOMAIN, limit=1000), began)
            runs = [_run_row(v) for v in registry.list_versions(DOMAIN) if v.version != v1]
            shift = {
                "variant": self.variant,
                "schedule": SCHEDULES[self.variant],
                "train_window_labels": self.train_window_labels,
                "rate_per_s": RATE_PER_S,
                "label_delay_s": LABEL_DELAY_S,
                "streamed": len(selection(data, ReplayPlan(end_fraction=0.5))),
                "v1": v1,
                "stream_s": round((self.stream.ended_at or 0) - timeline.started_at, 1),
                "milestones": milestones(timeline, self.statuses, moves, runs),
                "offline": self.offline(
                    registry, data, champions(v1, moves), last=runs[-1]["version"] if runs else None
                ),
                "figures": {"samples": [s.__dict__ for s in timeline.samples],
                            "statuses": self.statuses},
            }  # fmt: skip
        return {
            "run": self.out.name,
            "command": f"python -m bench.shift --variant {self.variant}"
            + (
                f" --train-window-labels {self.train_window_labels}"
                if self.train_window_labels
                else ""
            ),
            "source": source_facts(),
            "machine": {"time": datetime.now(UTC).isoformat(), "cores": _cores()},
            "load_start": load_start,
            "load_end": _load(),
            "sections": {"shift": shift},
        }


def _kept(status: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a monitor status this run reads."""
    roles = {
        role: {"version": info.get("version"), "time": (info.get("windows") or {}).get("time")}
        for role, info in (status.get("roles") or {}).items()
    }
    return {k: status.get(k) for k in ("evaluated_at", "checks", "alarms", "actions")} | {
        "roles": roles
    }


def _run_row(version: Any) -> dict[str, Any]:
    tags = version.tags
    return {"version": version.version, "created_at": version.created_at.timestamp(),
            "trigger": tags.get("trigger"), "decision": tags.get("decision")}  # fmt: skip


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _cores() -> int | None:
    return os.cpu_count()


# -- the report -------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:g}"
    return str(value)


def _moment_row(name: str, moment: Mapping[str, Any] | None, detail: str = "") -> str:
    if moment is None:
        return f"| {name} | not reached | - | - | {detail} |"
    return (f"| {name} | {moment['t_s']:.0f} | {moment['events']} | {moment['labelled']} "
            f"| {detail} |")  # fmt: skip


def markdown(results: Mapping[str, Any]) -> str:
    """``results.md``: the milestones and the offline scores of every champion."""
    shift = results["sections"]["shift"]
    m = shift["milestones"]
    lines = [
        f"# The shift case, variant {shift['variant']} (retrain schedule {shift['schedule']})",
        "",
        f"Command: `{results['command']}` (commit {results['source'].get('commit')}, "
        f"dirty tree: {results['source'].get('dirty')}), {results['machine']['time']}, "
        f"{results['machine']['cores']} cores, load average {results['load_start']} at the "
        f"start and {results['load_end']} at the end (other work shared the machine).",
        "",
        f"v1 (v{shift['v1']}) trained on the SMS collection alone. Then SpamAssassin's older "
        f"half ({shift['streamed']} mails) streamed live at {shift['rate_per_s']:g}/s with "
        f"`--event-time send`, labels {shift['label_delay_s']:g} s behind; the stream took "
        f"{shift['stream_s']:.0f} s. Seconds, events and labelled events are counted from "
        "the stream's start; labelled events are the monitor's own count (its status' "
        "`checks.labels`), events are the replay's.",
        "",
        "## Milestones",
        "",
        "| what | seconds | events sent | labelled events | detail |",
        "|---|---|---|---|---|",
        _moment_row("live-quality alarm (floor)", m["alarm"]),
        _moment_row("retrain trigger sent", m["trigger"]),
    ]
    for run in m["runs"]:
        detail = f"trigger {run['trigger']}, {run['decision']}"
        lines.append(_moment_row(f"v{run['version']} registered", run, detail))
    for move in m["moves"]:
        detail = f"by {move['actor']}: {move['reason']}".replace("|", "/")
        lines.append(_moment_row(f"{move['action']} to v{move['version']}", move, detail))
    off = shift["offline"]
    lines += [
        "",
        "## On SpamAssassin's newer half",
        "",
        f"{off['newer_half']} mails ({off['newer_half_spam']} spam), which no model trained "
        "on. F1 and ham flagged at each model's own threshold; F1 at <= 1 % ham flagged "
        "(the threshold chosen on these very scores: descriptive).",
        "",
        "| model | threshold | F1 | ham flagged | recall | AUPRC | F1 at <= 1 % ham flagged |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, f in off["models"].items():
        lines.append(
            f"| {name} | {_cell(f['threshold'])} | {_cell(f['f1'])} | {_cell(f['ham_flagged'])} "
            f"| {_cell(f['recall'])} | {_cell(f['auprc'])} | {_cell(f['f1_at_1pct'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Run one variant and write its summary."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.shift", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--variant", choices=sorted(SCHEDULES), default="hourly")
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument(
        "--train-window-labels",
        type=int,
        default=None,
        help="the retrain service's emails training window (newest N labelled examples)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="run folder (default: results/<run id>-shift-<variant>)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path("results") / f"{run_id}-shift-{args.variant}"
    out.mkdir(parents=True, exist_ok=True)
    results = ShiftRun(args.variant, args.data_dir, out, args.train_window_labels).run()
    write_summary(out, results, markdown)
    print((out / "results.md").read_text())


if __name__ == "__main__":
    main()
