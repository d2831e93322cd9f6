"""The fault-injection harness: ``scripts/faults [options]`` (or ``python -m bench.faults``).

Starts its own Kafka and Redis on free ports (faults stop and start them: never the
user's services), fits the transactions champion, then runs each chosen fault
(:mod:`bench.faults.runs`) and writes ``results/<timestamp>-faults/``: ``results.md``
and ``results.json`` (per fault: events in, predictions out, dead letters, lost,
duplicated, time to recover, and the fault's own checks; small, ready to commit, see
:mod:`bench.summary`) and ``figures.json`` (everything). ``--publish`` copies the
summary into ``docs/results/<timestamp>-faults/``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.data import load_corpus
from bench.env import ROOT, environment, start_run
from bench.faults.runs import FAULTS, Context, FaultResult
from bench.machine import Section, load_average, machine_facts, wait_for_quiet
from bench.report import fmt, machine_text, source_text, table
from bench.sections.throughput import prepare_domain
from bench.summary import announce, source_facts, write_summary
from inferloop.settings import Settings

log = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The harness's options."""
    p = argparse.ArgumentParser(prog="scripts/faults", description=__doc__.split("\n\n")[0])
    p.add_argument("--faults", default=",".join(FAULTS), help=f"of {','.join(FAULTS)}")
    p.add_argument("--rate", type=float, default=1000.0, help="events per second streamed")
    p.add_argument("--seconds", type=float, default=30.0, help="length of each stream")
    p.add_argument("--max-load", type=float, default=None)
    p.add_argument("--wait-load-s", type=float, default=1800.0)
    p.add_argument("--out", type=Path, default=ROOT / "results")
    p.add_argument(
        "--publish",
        action="store_true",
        help="at the end, copy results.md and results.json into docs/results/<run>/",
    )
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    args.faults = tuple(args.faults.split(","))
    unknown = [f for f in args.faults if f not in FAULTS]
    if unknown:
        p.error(f"unknown faults: {', '.join(unknown)}")
    return args


def markdown(results: dict[str, Any]) -> str:
    """The fault table."""
    rows = []
    for r in results["runs"]:
        failed = [name for name, ok in r["checks"].items() if not ok]
        verdict = "pass" if r["passed"] else "FAIL" + (f" ({'; '.join(failed)})" if failed else "")
        rows.append(
            [
                r["fault"],
                r["delivery"],
                r["events_in"],
                r["predictions"],
                r["dead_letters"],
                r["lost"],
                r["duplicated"],
                r["recover_s"],
                verdict,
                r["notes"],
            ]
        )
    return (
        f"# inferloop fault injection\n\n`{results['command']}`\n\n"
        f"{source_text(results)} {machine_text(results['machine'])}\n\n"
        f"Each run streams {fmt(results['events_per_run'])} transactions at "
        f"{fmt(results['rate'])}/s through one worker and injects one fault once a third of "
        "them are predicted. Events in: ids Kafka acknowledged to the producer (plus the hostile "
        "messages). Lost: an id found in neither predictions nor dead letters; duplicated: "
        "found more often than sent (`read_committed`). Time to recover: from the end of the "
        "fault until every event sent before it was predicted. Targets: 0 lost everywhere, "
        "0 duplicated in exactly-once. "
        f"Load average {results['load_start'][0]:.2f} → {results['load_end'][0]:.2f}.\n\n"
        + table(
            [
                "fault",
                "delivery",
                "events in",
                "predictions",
                "dead letters",
                "lost",
                "duplicated",
                "recover s",
                "verdict",
                "notes",
            ],
            rows,
            [0, 0, 0, 0, 0, 0, 0, 1, 0, 0],
        )
    )


def main(argv: list[str] | None = None) -> Path:
    """Run the chosen faults; the results folder."""
    args = parse_args(argv)
    out = start_run(args.log_level, args.out, logging.CRITICAL, "-faults")
    started = time.monotonic()
    if args.max_load is not None:
        wait_for_quiet(args.max_load, args.wait_load_s)
    runs: list[FaultResult] = []
    with (
        tempfile.TemporaryDirectory(prefix="inferloop-faults-") as tmp,
        environment(Path(tmp), out) as env,
    ):
        results: dict[str, Any] = {
            "run": out.name,
            "command": " ".join(["scripts/faults", *sys.argv[1:]]),
            "source": source_facts(),
            "machine": machine_facts(env.versions()),
            "rate": args.rate,
            "events_per_run": int(args.rate * args.seconds),
        }
        corpus = load_corpus("transactions", Settings().data_dir, limit=20_000)
        ctx = Context(env, prepare_domain(env, corpus, out.name), args.rate, args.seconds)
        with Section("faults") as section:
            for name in args.faults:
                runs.extend(FAULTS[name](ctx))
                write(out, results, runs, section)
        write(out, results, runs, section)
    log.info("results in %s (%.0f s)", out, time.monotonic() - started)
    print(out / "results.md")
    announce(out, args.publish)
    return out


def write(out: Path, results: dict[str, Any], runs: list[FaultResult], section: Section) -> None:
    """The figures and the summary, as they stand."""
    results |= {
        "runs": [r.as_dict() for r in runs],
        "load_start": section.load_start,
        "load_end": load_average(),
    }
    write_summary(out, results, markdown)
