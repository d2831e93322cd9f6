"""A live A/A run on the real Kafka and Redis: the monitor must not roll back a promotion
of the very model it replaces.

Per domain: v1 is fitted on the oldest part of the data set and promoted; its artifact
is registered again, unchanged, as v2, and an operator promotes v2 by hand (``inferloop
registry promote``), which puts it on probation beside v1. Then the next part of the
data set is streamed with its labels coming back, through a real worker and a real
monitor (the demo's, started as the demo starts them). Every second the monitor's
status is read; at the end the paired counts it kept in Redis are judged as its policy
judges them. The run passes if no rollback happened (and the champion is still v2).

    python -m bench.live_aa [--out results] [--publish]

The summary (``results.md``, ``results.json``) goes to ``<out>/<run id>-live-aa/``;
``--publish`` copies it to ``docs/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.summary import announce, source_facts, write_summary
from inferloop.demo.monitoring import find_rollback
from inferloop.demo.plan import DemoPlan, DomainPlan, WorsePlan
from inferloop.demo.run import Demo, DomainRun
from inferloop.demo.worse import register_worse
from inferloop.domains.replay import ReplayPlan, replay
from inferloop.monitor.decisions import counts_of
from inferloop.monitor.paired import decide
from inferloop.monitor.state import read_status
from inferloop.registry import Registry
from inferloop.settings import Domain, Settings

# The A/A's v1: the domain's pipeline as configured, fitted on the oldest share below
# (no gate: the comparison is of a version with itself, whatever its quality).
V1_FRACTION = {"emails": 0.2, "transactions": 0.1}
# The stream after it: emails about 1,500 (some 450 spam, past the 300 positives of a
# probation); transactions 80,000 at 1,000/s (fraud is rare: about 140 positives).
DOMAINS = (
    DomainPlan("emails", "spamassassin", seed_end=0.2, stream_end=0.45, rate_per_s=30.0,
               schedule="off", interleave=True),
    DomainPlan("transactions", "creditcard", seed_end=0.1, stream_end=0.45,
               rate_per_s=1000.0, schedule="off"),
)  # fmt: skip
LABEL_DELAY_S = 2.0
# After the stream, how long the monitor has to read the last labels and decide.
SETTLE_S = 20.0


@dataclass
class DomainAA:
    """One domain's A/A: its versions and what the monitor's status showed."""

    domain: Domain
    v1: int = 0
    v2: int = 0
    same_digest: bool = False
    events: int = 0
    labels: int = 0
    seen: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)


def register_again(registry: Registry, domain: Domain, version: int) -> int:
    """Register version ``version``'s artifact, unchanged, as a new version."""
    mv = registry.get_version(domain, version)
    loaded = registry.load(domain, version)
    again = registry.register(
        domain, loaded.pipeline, domain=mv.domain, threshold=mv.threshold,
        input_schema_version=mv.input_schema_version, golden_events=list(mv.golden.events),
        params=dict(mv.params), metrics=dict(mv.metrics), champion_metrics=None,
        lineage={**mv.lineage, "same_as": version}, created_by="bench.live_aa",
        description=f"A/A: the artifact of v{version}, registered again",
        tags={"trigger": "operator-by-hand", "bench": "live-aa"},
    )  # fmt: skip
    return again.version


def prepare(demo: Demo, registry: Registry, domain: Domain, run: DomainRun) -> DomainAA:
    """v1 fitted and promoted, v2 its artifact again, registered (not promoted yet)."""
    aa = DomainAA(domain)
    plan = WorsePlan({}, V1_FRACTION[domain], "the domain's pipeline as configured")
    v1 = register_worse(registry, run.data, plan, demo.settings.retrain.seed)
    registry.promote(domain, v1.version, expected_current=None, reason="A/A: v1")
    aa.v1 = v1.version
    aa.v2 = register_again(registry, domain, v1.version)
    digest = registry.get_version(domain, aa.v2).artifact_digest
    aa.same_digest = digest == v1.artifact_digest
    return aa


def promote_by_hand(demo: Demo, aa: DomainAA) -> None:
    """``inferloop registry promote`` of v2, as an operator would."""
    argv = ["registry", "promote", aa.domain, str(aa.v2), "--reason",
            f"A/A: v{aa.v2} is v{aa.v1}'s artifact", "--json"]  # fmt: skip
    result: dict[str, Any] = {}
    demo.run_operator(argv, result)
    if "error" in result:
        raise SystemExit(f"{aa.domain}: promoting v{aa.v2} failed: {result['error']}")


def stream(demo: Demo, run: DomainRun, aa: DomainAA) -> None:
    """The next part of the data set, labels ``LABEL_DELAY_S`` behind."""
    d = run.plan
    plan = ReplayPlan(rate_per_s=d.rate_per_s, label_delay_s=LABEL_DELAY_S,
                      start_fraction=d.seed_end, end_fraction=d.stream_end)  # fmt: skip
    summary = replay(demo.settings, run.data, plan)
    aa.events, aa.labels = summary.events_sent, summary.labels_sent


def observe(registry: Registry, aa: DomainAA) -> None:
    """Keep the monitor's probation figures when they changed."""
    status = read_status(registry.client, registry.keys, aa.domain) or {}
    probation = status.get("probation")
    if probation and (not aa.seen or aa.seen[-1]["probation"] != probation):
        aa.seen.append({"at": status.get("evaluated_at"), "probation": probation})


def judge(demo: Demo, registry: Registry, aa: DomainAA) -> None:
    """The paired counts the monitor kept, judged as its policy judges them."""
    raw = registry.client.hgetall(registry.keys.monitor_counts(aa.domain))
    counts = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
    paired = counts_of(counts, aa.v2, aa.v1)
    section = demo.settings.monitor
    verdict = decide(paired, alpha=section.paired_alpha,
                     min_discordant=section.min_discordant_pairs,
                     weighting=section.paired_weighting)  # fmt: skip
    compared = min(paired.positives, section.probation_positives)
    rollback = find_rollback(registry.history(aa.domain, limit=1000), aa.v2)
    champion = registry.resolve(aa.domain)
    aa.final = {
        "labelled": paired.positives + paired.negatives,
        "positives": paired.positives,
        "evaluation_points": compared // section.evaluation_positives,
        "probation_positives": section.probation_positives,
        "verdict": verdict.evidence,
        "rolled_back": rollback is not None,
        "champion": champion.version if champion else None,
    }


def run_aa(base: Settings, out: Path) -> dict[str, Any]:
    """The whole A/A run; its results."""
    plan = DemoPlan(run_id=f"aa{datetime.now(UTC):%Y%m%d%H%M%S}", out_dir=out / "demo",
                    domains=DOMAINS, label_delay_s=LABEL_DELAY_S)  # fmt: skip
    demo = Demo(base, plan, Console(stderr=True))
    began, load_start = time.monotonic(), os.getloadavg()
    try:
        demo.start_services()
        demo.load_data()
        demo.create_topics()
        with Registry.from_settings(demo.settings) as registry:
            runs = {d: prepare(demo, registry, d, r) for d, r in demo.runs.items()}
            for domain in runs:
                demo.start_worker(domain)
                demo.start_monitor(domain)
            demo.await_workers()
            demo.await_monitors()
            for aa in runs.values():
                promote_by_hand(demo, aa)
            threads = [threading.Thread(target=stream, args=(demo, demo.runs[d], aa))
                       for d, aa in runs.items()]  # fmt: skip
            for thread in threads:
                thread.start()
            settle_until = None
            while settle_until is None or time.monotonic() < settle_until:
                for aa in runs.values():
                    observe(registry, aa)
                if settle_until is None and not any(t.is_alive() for t in threads):
                    settle_until = time.monotonic() + SETTLE_S
                time.sleep(1.0)
            for aa in runs.values():
                judge(demo, registry, aa)
    finally:
        demo.stop()
    return {
        "run": out.name,
        "command": "python -m bench.live_aa " + " ".join(sys.argv[1:]),
        "source": source_facts(),
        "machine": {"time": datetime.now(UTC).isoformat(), "cores": os.cpu_count()},
        "load_start": load_start,
        "load_end": os.getloadavg(),
        "elapsed_s": round(time.monotonic() - began, 1),
        "label_delay_s": LABEL_DELAY_S,
        "sections": {"live_aa": {"domains": {d: asdict(aa) for d, aa in runs.items()}}},
    }


def markdown(results: dict[str, Any]) -> str:
    """``results.md``: one row per domain."""
    load = ", ".join(f"{a:.1f}" for a in results["load_start"])
    lines = [
        "# Live A/A: the same model promoted as a new version",
        "",
        f"`{results['command']}` at {results['machine']['time']}, commit "
        f"{results['source'].get('commit')}; {results['elapsed_s']} s; load average at "
        f"the start {load} on {results['machine']['cores']} cores (shared with other jobs).",
        "",
        "Per domain: v2 is v1's artifact registered again (same digest), promoted by hand "
        "with `inferloop registry promote`, so the monitor re-scores v1 beside it on "
        f"probation. Labels came back {results['label_delay_s']} s after their events. "
        "The verdict is the monitor's own paired test on the counts it kept in Redis.",
        "",
        "| domain | v1 -> v2 | same digest | events | labelled (monitor) | positives | "
        "evaluation points | discordant | e_loss | e_win | outcome | rolled back | "
        "champion after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d, aa in results["sections"]["live_aa"]["domains"].items():
        f, v = aa["final"], aa["final"].get("verdict", {})
        lines.append(
            f"| {d} | v{aa['v1']} -> v{aa['v2']} | {aa['same_digest']} | {aa['events']} | "
            f"{f.get('labelled')} | {f.get('positives')} | {f.get('evaluation_points')} | "
            f"{v.get('discordant')} | {v.get('e_loss')} | {v.get('e_win')} | "
            f"{v.get('outcome')} | {f.get('rolled_back')} | v{f.get('champion')} |"
        )
    lines += [
        "",
        "Evaluation points: one every `evaluation_positives` new positives compared, up to "
        "the probation's `probation_positives` (figures in the JSON).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run it, write the summary, publish it on ``--publish``."""
    parser = argparse.ArgumentParser(prog="python -m bench.live_aa", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--publish", action="store_true")
    args = parser.parse_args(argv)
    out = args.out / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-live-aa"
    out.mkdir(parents=True, exist_ok=True)
    results = run_aa(Settings(), out)
    write_summary(out, results, markdown)
    print(json.dumps({d: aa["final"] for d, aa in
                      results["sections"]["live_aa"]["domains"].items()}, indent=2))  # fmt: skip
    announce(out, args.publish)
    failed = [d for d, aa in results["sections"]["live_aa"]["domains"].items()
              if aa["final"].get("rolled_back")]  # fmt: skip
    if failed:
        raise SystemExit(f"rolled back in the A/A run: {', '.join(failed)}")


if __name__ == "__main__":
    main()
