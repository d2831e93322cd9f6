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


def version_story(
    registry: Registry, domain: str, started: datetime
) -> tuple[list[dict[str, Any]], list[VersionEvent]]:
    """Each version of ``domain`` (status, metrics, why) and its moments on the timeline."""
    rows, events = [], []
    for version in registry.list_versions(domain):
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
    return rows, events


def build_report(
    out_dir: Path,
    records: Mapping[Domain, DomainRecords],
    registry: Registry,
    started: datetime,
    duration_s: float,
    *,
    streams: Mapping[str, tuple[float, float]] | None = None,
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
    summary = {
        domain: dataclasses.asdict(o) | {"versions": versions[domain]}
        for domain, o in outcomes.items()
    }
    summary_json = out_dir / "summary.json"
    summary_json.write_text(json.dumps(summary, indent=2, default=str))
    summary_md = out_dir / "summary.md"
    summary_md.write_text(markdown(outcomes, versions))
    return DemoReport(outcomes, versions, plots, summary_json, summary_md)


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
    for path in (*report.plots, report.summary_json, report.summary_md):
        console.print(f"wrote {path}")


def _by_status(versions: list[dict[str, Any]]) -> str:
    return ", ".join(f"{n} {status}" for status, n in status_counts(versions).items()) or "none"


def markdown(
    outcomes: Mapping[str, DomainOutcome], versions: Mapping[str, list[dict[str, Any]]]
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
    return "\n".join(lines)
