"""A run's summary: small, self-describing, and copied where the docs can cite it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.env import ROOT
from bench.faults.harness import markdown as faults_markdown
from bench.report import markdown, plots
from bench.summary import FIGURES, publish, rebuild, source_facts, tables, write_summary
from tests.bench.test_report import results as fixture_results


def results() -> dict[str, Any]:
    """The report's fixture as a run writes it: with its id and source, and a timeline
    of samples as large as a soak's, which the summary must leave out."""
    run = fixture_results()
    run["run"] = "20261207T120000Z"
    run["source"] = {"commit": "0123456789abcdef0123456789abcdef01234567", "dirty": True}
    run["machine"]["time"] = "2026-12-07T12:00:00+00:00"
    figures = run["sections"]["latency"]["figures"]["transactions"]
    figures["samples_s"] = [i * 0.5 for i in range(20_000)]
    return run


def test_the_summary_holds_every_table_and_the_facts_but_no_samples(tmp_path: Path) -> None:
    run = results()
    write_summary(tmp_path, run, markdown)

    text = (tmp_path / "results.md").read_text()
    assert text == markdown(run)
    assert "Run `20261207T120000Z` of commit `0123456789ab` with uncommitted changes" in text
    summary = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "results.json").stat().st_size < 16_000
    assert summary["run"] == "20261207T120000Z"
    assert summary["command"] == "scripts/bench --quick"
    assert summary["source"]["commit"].startswith("0123456789ab")
    assert summary["date"] == "2026-12-07T12:00:00+00:00"
    assert summary["machine"]["cores"] == 2
    assert summary["sections"]["throughput"] == {
        "seconds": 12.0,
        "load_start": [0.5, 0.4, 0.3],
        "load_end": [0.9, 0.5, 0.3],
    }
    sections = [t["section"] for t in summary["tables"]]
    assert sections[0] == "Throughput"
    assert "Latency" in sections
    throughput = summary["tables"][0]
    assert throughput["headers"][:2] == ["domain", "loop"]
    worker = next(r for r in throughput["rows"] if r[1] == "worker, at-least-once, 1 process")
    assert worker[2] == "16,000"
    assert "samples_s" not in (tmp_path / "results.json").read_text()
    # Every figure stays in the run folder, for the plots and for a rebuild.
    figures = json.loads((tmp_path / FIGURES).read_text())
    assert len(figures["sections"]["latency"]["figures"]["transactions"]["samples_s"]) == 20_000


def test_tables_are_read_back_as_the_markdown_shows_them() -> None:
    text = "# t\n\n## One\n\nintro\n\n| a | b |\n|---|---:|\n| x | 1,000 |\n| y | – |\n\n## Two\n"
    text += "\n| c |\n|---|\n| z |\n"
    assert tables(text) == [
        {"section": "One", "headers": ["a", "b"], "rows": [["x", "1,000"], ["y", "–"]]},
        {"section": "Two", "headers": ["c"], "rows": [["z"]]},
    ]


def test_publishing_copies_the_summary_and_plots_and_leaves_the_bulk(tmp_path: Path) -> None:
    out = tmp_path / "results" / "20261207T120000Z"
    out.mkdir(parents=True)
    run = results()
    write_summary(out, run, markdown)
    plots(run, out)
    (out / "bench.log").write_text("log lines\n")

    target = publish(out, tmp_path / "docs" / "results")

    assert target == tmp_path / "docs" / "results" / "20261207T120000Z"
    assert sorted(p.name for p in target.iterdir()) == [
        "latency.png",
        "results.json",
        "results.md",
        "throughput.png",
    ]
    assert (target / "results.md").read_text() == (out / "results.md").read_text()


def test_a_run_of_before_the_summary_is_rebuilt_from_its_full_results(tmp_path: Path) -> None:
    # Runs made before the summary held every figure in results.json, no figures.json.
    out = tmp_path / "20261207T015422Z"
    out.mkdir()
    legacy = results()
    del legacy["run"], legacy["source"]
    (out / "results.json").write_text(json.dumps(legacy))

    rebuild(out)

    summary = json.loads((out / "results.json").read_text())
    assert summary["run"] == "20261207T015422Z"
    assert summary["tables"][0]["section"] == "Throughput"
    assert json.loads((out / FIGURES).read_text())["sections"].keys() == {"throughput", "latency"}
    assert "Run `20261207T015422Z` of an unknown commit" in (out / "results.md").read_text()
    assert (out / "throughput.png").exists()
    # A summary alone cannot be rebuilt: it has no figures left.
    (out / FIGURES).unlink()
    with pytest.raises(SystemExit):
        rebuild(out)


def test_a_faults_run_writes_the_same_summary(tmp_path: Path) -> None:
    run = {
        "run": "20261207T120000Z-faults",
        "command": "scripts/faults --faults broker-restart",
        "source": {"commit": "0123456789abcdef", "dirty": False},
        "machine": results()["machine"],
        "rate": 1000.0,
        "events_per_run": 30_000,
        "load_start": [1.0, 1.0, 1.0],
        "load_end": [2.0, 1.0, 1.0],
        "runs": [
            {
                "fault": "broker-restart",
                "delivery": "at-least-once",
                "events_in": 30_000,
                "predictions": 30_000,
                "dead_letters": 0,
                "lost": 0,
                "duplicated": 12,
                "recover_s": 4.25,
                "passed": True,
                "checks": {"none lost": True},
                "notes": "",
            }
        ],
    }
    write_summary(tmp_path, run, faults_markdown)

    summary = json.loads((tmp_path / "results.json").read_text())
    assert "of commit `0123456789ab`, 2026" in (tmp_path / "results.md").read_text()
    (table,) = summary["tables"]
    assert summary["load_start"] == [1.0, 1.0, 1.0]
    assert table["section"] == "inferloop fault injection"
    assert table["headers"][:2] == ["fault", "delivery"]
    assert table["rows"] == [
        ["broker-restart", "at-least-once", "30,000", "30,000", "0", "0", "12", "4.2", "pass", ""]
    ]


def test_the_source_is_this_checkout_s_commit() -> None:
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert source_facts()["commit"] == head
    assert source_facts(Path("/")) == {"commit": None, "dirty": None}


def test_publishing_runs_already_made_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "20261207T120000Z"
    out.mkdir()
    write_summary(out, results(), markdown)
    docs = tmp_path / "docs"
    done = subprocess.run(
        [sys.executable, "-m", "bench.summary", str(out), "--docs", str(docs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == str(docs / "20261207T120000Z")
    assert (docs / "20261207T120000Z" / "results.json").exists()
