"""A run's summary, small and ready to commit: ``results.md`` and ``results.json``.

Every run folder (``results/<run id>/``) holds:

- ``results.md``: the tables and their notes, headed by the command, the commit, the date
  and the machine;
- ``results.json``: the same facts and every table as headers and rows of the cells
  ``results.md`` shows (a few KB: no samples, no timelines);
- the PNG plots;
- ``figures.json`` (every figure, raw samples and timelines included) and the logs: the
  bulk, never committed.

:func:`publish` copies the first three into ``docs/results/<run id>/``, where the docs
that cite a figure can point at it: ``scripts/bench --publish`` at the end of a run, or
``python -m bench.summary results/<run id> ...`` for runs already made.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.env import ROOT

#: What a run folder holds that belongs in the repository.
SUMMARY = ("results.md", "results.json")
FIGURES = "figures.json"
DOCS_RESULTS = ROOT / "docs" / "results"

Markdown = Callable[[dict[str, Any]], str]


def source_facts(root: Path = ROOT) -> dict[str, Any]:
    """The commit the harness ran from, and whether tracked files differed from it."""
    try:
        commit = _git(root, "rev-parse", "HEAD")
        dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def tables(markdown: str) -> list[dict[str, Any]]:
    """Every Markdown table of ``markdown``: its section (the heading above it), headers
    and rows, cells as the Markdown shows them."""
    found: list[dict[str, Any]] = []
    heading = ""
    current: dict[str, Any] | None = None
    for line in markdown.splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if not line.startswith("|"):
            current = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if current is None:
            current = {"section": heading, "headers": cells, "rows": []}
            found.append(current)
        elif not all(set(c) <= set("-:") for c in cells):
            current["rows"].append(cells)
    return found


def summary(results: dict[str, Any], markdown: str) -> dict[str, Any]:
    """``results.json``: the run's facts and its tables, without the raw figures."""
    return {
        "run": results.get("run"),
        "command": results.get("command"),
        "source": results.get("source"),
        "date": results.get("machine", {}).get("time"),
        "machine": results.get("machine"),
        "sections": {
            name: {k: v for k, v in section.items() if k != "figures"}
            for name, section in results.get("sections", {}).items()
        },
        # A run of one section (faults) keeps its load average at the top level.
        **{k: results[k] for k in ("load_start", "load_end") if k in results},
        "tables": tables(markdown),
        "figures": f"{FIGURES} of the run folder (not committed)",
    }


def write_summary(out: Path, results: dict[str, Any], markdown: Markdown) -> None:
    """``figures.json`` (everything), ``results.md`` and ``results.json`` (the summary)."""
    (out / FIGURES).write_text(json.dumps(results, indent=2, default=str))
    text = markdown(results)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(
        json.dumps(summary(results, text), indent=2, default=str, ensure_ascii=False) + "\n"
    )


def publish(out: Path, docs: Path = DOCS_RESULTS) -> Path:
    """Copy the run's summary and plots into ``docs/<run id>/``; that folder."""
    target = docs / out.name
    target.mkdir(parents=True, exist_ok=True)
    for path in [*(out / name for name in SUMMARY), *sorted(out.glob("*.png"))]:
        shutil.copy2(path, target / path.name)
    return target


def announce(out: Path, publish_now: bool) -> None:
    """Publish the run (``--publish``), or say how to."""
    if publish_now:
        print(f"published: {publish(out)}")
    else:
        print(f"to publish its summary: python -m bench.summary {out}")


def rebuild(out: Path) -> None:
    """Write a run folder's summary again from its figures (a run of before the summary:
    its ``results.json`` or ``faults.json`` held every figure)."""
    from bench import report  # noqa: PLC0415 - the report imports matplotlib
    from bench.faults import harness as faults  # noqa: PLC0415 - and the faults, Kafka

    full = out / FIGURES
    if not full.exists():
        full = next(p for p in (out / "results.json", out / "faults.json") if p.exists())
    results = json.loads(full.read_text())
    if "tables" in results:
        raise SystemExit(f"{full} is a summary already, and {out} has no {FIGURES}")
    results.setdefault("run", out.name)
    write_summary(out, results, faults.markdown if "runs" in results else report.markdown)
    if "sections" in results and "runs" not in results:
        report.plots(results, out)


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.summary RUN_FOLDER ...``: publish runs already made."""
    p = argparse.ArgumentParser(prog="python -m bench.summary", description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="results/<run id> folders")
    p.add_argument("--docs", type=Path, default=DOCS_RESULTS, help="where to copy them")
    p.add_argument(
        "--rebuild", action="store_true", help="write results.md and results.json again first"
    )
    args = p.parse_args(argv)
    for out in args.runs:
        if args.rebuild or not (out / FIGURES).exists():
            rebuild(out)
        print(publish(out, args.docs))


if __name__ == "__main__":
    main()
