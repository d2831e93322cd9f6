"""The demo's closing report: a table per domain, JSON and Markdown, and the plots."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from inferloop.demo.monitoring import MonitorLog, Rollback
from inferloop.demo.outcome import (
    DomainOutcome,
    DomainRecords,
    as_rows,
    status_counts,
    summarise,
)
from inferloop.demo.plots import VersionEvent, pr_plot, throughput_plot, timeline_plot
from inferloop.registry import Registry
from inferloop.settings import Domain

QUALITY_COLUMNS = (
    "version",
    "predictions",
    "labelled",
    "positives",
    "precision",
    "recall",
    "f1",
    "auprc",
)


@dataclass(frozen=True)
class DemoReport:
    """What the demo shows at the end, and where it wrote it."""

    outcomes: dict[str, DomainOutcome]
    versions: dict[str, list[dict[str, Any]]]
    plots: list[Path]
    summary_json: Path
    summary_md: Path
    # What the monitor measured live, per domain: versions, rollback, alarms.
    live: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)


def version_story(
    registry: Registry, domain: str, started: datetime
) -> tuple[list[dict[str, Any]], list[VersionEvent]]:
    """Each version of ``domain`` (status, metrics, why) and its moments on the timeline."""
    rows, events = [], []
    by_hand = set()
    for version in registry.list_versions(domain):
        if version.tags.get("trigger") == "operator-by-hand":
            by_hand.add(version.version)
        rows.append(
            {
                "version": version.version,
                "status": version.status,
                "created_by": version.created_by,
                "metrics": {k: version.metrics.get(k) for k in ("f1", "auprc", "fpr", "recall")},
                "champion_metrics": dict(version.champion_metrics or {}),
                "trigger": version.tags.get("trigger", ""),
                "reason": (version.params.get("gate") or {}).get("reason", version.description),
            }
        )
        at = (version.created_at - started).total_seconds()
        if version.status in ("rejected", "not_comparable"):
            events.append(VersionEvent(at, version.version, version.status))
    for entry in registry.history(domain, limit=1000):
        if entry.alias == "champion" and entry.to_target is not None:
            at = (entry.time - started).total_seconds()
            events.append(VersionEvent(at, entry.to_target.version, "promoted"))
            if entry.action == "rollback" and entry.from_target is not None:
                events.append(VersionEvent(at, entry.from_target.version, "rolled back"))
            elif entry.action == "promote" and entry.to_target.version in by_hand:
                events.append(VersionEvent(at, entry.to_target.version, "promoted by hand"))
    return rows, events


def live_story(log: MonitorLog | None, rollback: Rollback | None) -> dict[str, Any]:
    """What the monitor measured (its figures per version, as its status gave them), its
    rollback of the version promoted by hand, and its drift alarms."""
    log = log or MonitorLog()
    return {
        "versions": log.rows(),
        "rollback": None if rollback is None else dataclasses.asdict(rollback),
        "drift_alarms": log.drift_alarms(),
        "alarms": len(log.alarms),
        "actions": log.actions,
    }


def build_report(
    out_dir: Path,
    records: Mapping[Domain, DomainRecords],
    registry: Registry,
    started: datetime,
    duration_s: float,
    *,
    streams: Mapping[str, tuple[float, float]] | None = None,
    monitor_logs: Mapping[Domain, MonitorLog] | None = None,
    rollbacks: Mapping[Domain, Rollback | None] | None = None,
) -> DemoReport:
    """Figures, plots and files for every domain of the run."""
    outcomes: dict[str, DomainOutcome] = {}
    versions: dict[str, list[dict[str, Any]]] = {}
    timelines: dict[str, list[VersionEvent]] = {}
    plots: list[Path] = []
    for domain, r in records.items():
        outcomes[domain] = summarise(domain, r)
        versions[domain], timelines[domain] = version_story(registry, domain, started)
        plots.append(pr_plot(domain, r.predictions, r.labels, out_dir / f"pr-{domain}.png"))
    plots.append(throughput_plot(list(outcomes.values()), out_dir / "throughput.png"))
    plots.append(timeline_plot(timelines, duration_s, out_dir / "model-versions.png", streams))
    logs, moves = monitor_logs or {}, rollbacks or {}
    live: dict[str, dict[str, Any]] = {d: live_story(logs.get(d), moves.get(d)) for d in records}
    summary = {
        domain: dataclasses.asdict(o) | {"versions": versions[domain], "monitor": live[domain]}
        for domain, o in outcomes.items()
    }
    summary_json = out_dir / "summary.json"
    summary_json.write_text(json.dumps(summary, indent=2, default=str))
    summary_md = out_dir / "summary.md"
    summary_md.write_text(markdown(outcomes, versions, live))
    return DemoReport(outcomes, versions, plots, summary_json, summary_md, live)


def headline(o: DomainOutcome) -> dict[str, str]:
    """The one-line figures of a domain."""
    latency = o.latency_ms
    return {
        "events": str(o.replayed),
        "predicted": str(o.predicted_ids),
        "lost": str(o.lost),
        "duplicates": str(o.duplicates),
        "dead letters": ", ".join(f"{k} {v}" for k, v in sorted(o.dead_letters.items())) or "0",
        "by version": ", ".join(f"v{k} {v}" for k, v in o.by_version.items()),
        "throughput": f"{o.throughput_per_s:.0f}/s",
        "latency p50/p99": (f"{latency['p50']:.0f} / {latency['p99']:.0f} ms" if latency else "-"),
    }


def print_report(console: Console, report: DemoReport) -> None:
    """The tables a person reads at the end."""
    for domain, outcome in report.outcomes.items():
        table = Table(title=f"{domain}", title_justify="left", show_header=False)
        table.add_column("what")
        table.add_column("value")
        for key, value in headline(outcome).items():
            table.add_row(key, escape(value))
        console.print(table)
        quality = Table(
            title=f"{domain}: each version on the labels that came back for its predictions",
            title_justify="left",
        )
        rows = as_rows(outcome)
        for column in QUALITY_COLUMNS:
            quality.add_column(column)
        for row in rows:
            quality.add_row(*(str(row[c]) for c in row))
        console.print(quality)
        versions = Table(
            title=f"{domain}: model versions ({_by_status(report.versions[domain])})",
            title_justify="left",
        )
        for column in ("version", "status", "trigger", "the gate's reason"):
            versions.add_column(column)
        for v in report.versions[domain]:
            versions.add_row(
                f"v{v['version']}",
                v["status"],
                escape(v["trigger"]),
                escape(str(v["reason"] or "")),
            )
        console.print(versions)
        if domain in report.live:
            print_live(console, domain, report.live[domain])
    for path in (*report.plots, report.summary_json, report.summary_md):
        console.print(f"wrote {path}")


LIVE_COLUMNS = ("version", "last role", "labelled", "positives", "precision", "recall", "f1",
                "auprc", "target")  # fmt: skip


def live_rows(live: Mapping[str, Any]) -> list[list[str]]:
    """The monitor's figures per version as table cells (value [low, high])."""
    rows = []
    for v in live["versions"]:
        target = v["target_value"]
        rows.append(
            [f"v{v['version']}", v["last_role"], str(v["labelled"]), str(v["positives"]),
             *(_figure(v[k]) for k in ("precision", "recall", "f1", "auprc")),
             f"{v['target'] or ''} {_figure(target)}".strip()]
        )  # fmt: skip
    return rows


def rollback_line(live: Mapping[str, Any]) -> str:
    """The rollback in one sentence (or that there was none)."""
    r = live["rollback"]
    drift = live["drift_alarms"]
    alarms = f"; drift alarms: {len(drift)}" if drift else "; no drift alarm"
    if r is None:
        return "No rollback" + alarms + "."
    return (
        f"v{r['version']} (promoted by {r['promoted_by']}) rolled back to v{r['to_version']} "
        f"by the {r['rolled_back_by']} {r['seconds']:.1f} s after its promotion, on "
        f"{r['labelled']} labelled events ({r['positives']} positives) compared in pairs"
        f"{alarms}."
    )


def print_live(console: Console, domain: str, live: Mapping[str, Any]) -> None:
    """The monitor's table and the rollback line of a domain."""
    table = Table(
        title=f"{domain}: each version as the monitor measured it live (its time window)",
        title_justify="left",
    )
    for column in LIVE_COLUMNS:
        table.add_column(column)
    for row in live_rows(live):
        table.add_row(*(escape(c) for c in row))
    console.print(table)
    console.print(rollback_line(live), markup=False)


def _figure(figure: Mapping[str, Any] | None) -> str:
    if not figure or figure.get("value") is None:
        return "-"
    low, high = figure.get("low"), figure.get("high")
    interval = "" if low is None or high is None else f" [{low:.2f}, {high:.2f}]"
    return f"{figure['value']:.3f}{interval}"


def _by_status(versions: list[dict[str, Any]]) -> str:
    return ", ".join(f"{n} {status}" for status, n in status_counts(versions).items()) or "none"


def markdown(
    outcomes: Mapping[str, DomainOutcome],
    versions: Mapping[str, list[dict[str, Any]]],
    live: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """The summary as Markdown tables."""
    lines = ["# inferloop demo", ""]
    for domain, outcome in outcomes.items():
        lines += [f"## {domain}", "", "| what | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in headline(outcome).items()]
        lines += ["", "| " + " | ".join(QUALITY_COLUMNS) + " |"]
        lines += ["|" + "---|" * len(QUALITY_COLUMNS)]
        lines += [
            "| " + " | ".join(str(v) for v in row.values()) + " |" for row in as_rows(outcome)
        ]
        lines += ["", f"Model versions: {_by_status(versions[domain])}."]
        lines += ["", "| version | status | trigger | the gate's reason |"]
        lines += ["|---|---|---|---|"]
        lines += [
            f"| v{v['version']} | {v['status']} | {v['trigger']} | {v['reason'] or ''} |"
            for v in versions[domain]
        ]
        lines.append("")
        if live and domain in live:
            lines += _live_markdown(live[domain])
    return "\n".join(lines)


def _live_markdown(live: Mapping[str, Any]) -> list[str]:
    lines = ["Each version as the monitor measured it live (its time window; 95 % intervals):"]
    lines += ["", "| " + " | ".join(LIVE_COLUMNS) + " |", "|" + "---|" * len(LIVE_COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in live_rows(live)]
    return [*lines, "", rollback_line(live), ""]
