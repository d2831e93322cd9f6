"""The benchmark harness: ``scripts/bench [options]`` (or ``python -m bench``).

Starts its own Kafka and Redis on free ports (unless ``--bootstrap`` / ``--redis-url``
name others), then runs the chosen sections for the chosen domains and writes
``results/<timestamp>/``: ``results.md`` and ``results.json`` (the tables, the command,
commit, date and machine: small, ready to commit, see :mod:`bench.summary`), PNG plots,
and ``figures.json`` (every figure, the load average at the start and end of each
section). ``--publish`` copies the summary and plots into ``docs/results/<timestamp>/``.
Every speed figure is reported beside a baseline measured in the same run.

Sections: ``throughput`` (raw baselines, offline scoring, the worker at full speed, the
Quix Streams peer), ``latency`` (end-to-end p50/p95/p99 at 25/50/75 % of the measured
maximum), ``swap`` (a promotion under a steady stream), ``soak`` (resident memory at half
load over ``--soak-s``), ``retrain`` (retraining time against labelled rows), ``lowrate``
(the worker's CPU and latency at ``--low-rates``, with each fetch setting in turn),
``registry`` (the registry's resolve, register and load times against the run's Redis).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import report, summary
from bench.data import Corpus, load_corpus
from bench.env import ROOT, Env, environment, start_run
from bench.machine import Section, machine_facts, wait_for_quiet
from bench.sections import latency, lowrate, registry, retrain, soak, swap, throughput
from inferloop.settings import Domain, Settings

log = logging.getLogger(__name__)

SECTIONS = ("throughput", "latency", "swap", "soak", "retrain", "lowrate", "registry")
DOMAINS: tuple[Domain, ...] = ("transactions", "emails")


def parser() -> argparse.ArgumentParser:
    """The harness's options (``--quick``: a tiny run that proves the harness works)."""
    p = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sections",
        default="throughput,latency,swap",
        help=f"comma-separated, of {','.join(SECTIONS)} (or 'all')",
    )
    p.add_argument("--domains", default="transactions,emails")
    p.add_argument("--emails-data", choices=("spamassassin", "sms"), default="spamassassin")
    p.add_argument(
        "--events",
        type=int,
        default=None,
        help="events per throughput run (default 100000 transactions, 20000 emails)",
    )
    p.add_argument("--rounds", type=int, default=1, help="throughput rounds (medians reported)")
    p.add_argument(
        "--quix-events",
        type=int,
        default=None,
        help="events for the Quix Streams peer (default 3000; 0 skips it)",
    )
    p.add_argument(
        "--profile", action="store_true", help="one more worker run per domain under pyinstrument"
    )
    p.add_argument(
        "--latency-s", type=float, default=30.0, help="seconds per latency or lowrate load"
    )
    p.add_argument(
        "--half-loads",
        type=int,
        default=latency.HALF_LOADS,
        help="latency loads of the worker at 50 %%, each followed by one of the pass-through"
        " baseline; the report gives their medians",
    )
    p.add_argument(
        "--max-rate",
        default=None,
        help="when throughput is not run: the maximum rate (msg/s) that the latency, swap and"
        " soak loads are shares of; one number for every domain, or per domain:"
        " transactions=15610,emails=6983",
    )
    p.add_argument(
        "--harness-client",
        "--latency-client",
        dest="harness_client",
        choices=("librdkafka", "kafka-python"),
        default="librdkafka",
        help="the client of the producer of events and the reader of predictions in the"
        " latency, swap and soak sections (the worker is the same)",
    )
    p.add_argument("--swap-s", type=float, default=20.0, help="seconds of stream per swap run")
    p.add_argument("--soak-s", type=float, default=1200.0, help="soak duration (20 min)")
    p.add_argument("--retrain-sizes", default="10000,100000,1000000")
    p.add_argument(
        "--low-rates",
        default=",".join(f"{r:g}" for r in lowrate.RATES),
        help="the lowrate section's rates, msg/s, comma-separated",
    )
    p.add_argument(
        "--registry-rounds",
        type=int,
        default=registry.ROUNDS,
        help="calls of resolve (and of PING) timed by the registry section",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes and durations (CI smoke)")
    p.add_argument(
        "--max-load",
        type=float,
        default=None,
        help="wait until the 1-minute load average is below this before each section",
    )
    p.add_argument("--wait-load-s", type=float, default=1800.0)
    p.add_argument("--out", type=Path, default=ROOT / "results")
    p.add_argument(
        "--publish",
        action="store_true",
        help="at the end, copy results.md, results.json and the plots into docs/results/<run>/",
    )
    p.add_argument("--bootstrap", default=None, help="use this Kafka instead of starting one")
    p.add_argument("--redis-url", default=None, help="with --bootstrap: this Redis")
    p.add_argument("--log-level", default="INFO")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options given, checked; the sizes of ``--quick`` put in."""
    p = parser()
    args = p.parse_args(argv)
    args.sections = SECTIONS if args.sections == "all" else tuple(args.sections.split(","))
    args.domains = tuple(args.domains.split(","))
    unknown = [s for s in args.sections if s not in SECTIONS] + [
        d for d in args.domains if d not in DOMAINS
    ]
    if unknown:
        p.error(f"unknown sections or domains: {', '.join(unknown)}")
    try:
        args.max_rate = None if args.max_rate is None else max_rates(args.max_rate)
    except ValueError as exc:
        p.error(f"--max-rate: {exc}")
    sizes = args.retrain_sizes.split(",")
    if not all(s.isdigit() and int(s) > 0 for s in sizes):
        p.error(f"--retrain-sizes: positive whole numbers, comma-separated: {args.retrain_sizes!r}")
    args.retrain_sizes = [int(s) for s in sizes]
    try:
        args.low_rates = low_rates(args.low_rates)
    except ValueError as exc:
        p.error(f"--low-rates: {exc}")
    if args.half_loads < 1:
        p.error(f"--half-loads: at least 1, not {args.half_loads}")
    if args.quick:
        args.rounds = 1
        args.registry_rounds = min(args.registry_rounds, 500)
        args.half_loads = 1
        args.latency_s, args.swap_s, args.soak_s = 4.0, 6.0, min(args.soak_s, 20.0)
        # The smallest prefixes of the data with enough frauds for the forward folds.
        args.retrain_sizes = [10_000, 20_000]
    return args


def max_rates(text: str) -> dict[Domain | None, float]:
    """``--max-rate``: ``15610`` (None: every domain) or ``transactions=15610,emails=6983``."""
    rates: dict[Domain | None, float] = {}
    for part in text.split(","):
        name, sep, number = part.rpartition("=")
        domain = next((d for d in DOMAINS if d == name), None)
        if sep and domain is None:
            raise ValueError(f"unknown domain {name!r} (domains: {', '.join(DOMAINS)})")
        if (domain in rates) or (None in rates) or (not sep and rates):
            raise ValueError(f"one rate per domain, or one number for all: {text!r}")
        rates[domain] = _rate(number)
    return rates


def low_rates(text: str) -> list[float]:
    """``--low-rates``: rates (msg/s), comma-separated."""
    return [_rate(part) for part in text.split(",")]


def _rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        rate = float("nan")
    if not 0 < rate < float("inf"):
        raise ValueError(f"a rate is a positive number of messages a second, not {text!r}")
    return rate


def events_for(args: argparse.Namespace, domain: Domain) -> int:
    """Events per throughput run of ``domain``."""
    if args.events is not None:
        return int(args.events)
    if args.quick:
        return 2_000 if domain == "transactions" else 500
    return 100_000 if domain == "transactions" else 20_000


def quix_events_for(args: argparse.Namespace, domain: Domain) -> int:
    """Events the Quix Streams peer scores."""
    if args.quix_events is not None:
        return int(args.quix_events)
    return 200 if args.quick else 3_000


class Run:
    """One harness run: its results so far, written out after every section."""

    def __init__(self, args: argparse.Namespace, env: Env, out: Path) -> None:
        self.args = args
        self.env = env
        self.out = out
        self.results: dict[str, Any] = {
            "run": out.name,
            "command": " ".join(["scripts/bench", *sys.argv[1:]]),
            "source": summary.source_facts(),
            "machine": machine_facts(env.versions()),
            "sections": {},
        }
        self.corpora: dict[Domain, Corpus] = {}
        self.setups: dict[Domain, throughput.DomainSetup] = {}

    def setup(self, domain: Domain) -> throughput.DomainSetup:
        """The domain's events and champion (loaded and fitted once per run)."""
        if domain not in self.setups:
            corpus = load_corpus(
                domain,
                Settings().data_dir,
                self.args.emails_data,
                limit=events_for(self.args, domain),
            )
            self.corpora[domain] = corpus
            self.setups[domain] = throughput.prepare_domain(self.env, corpus, self.out.name)
        return self.setups[domain]

    def section(self, name: str) -> Section:
        """A section's timing and load record (after waiting for a quiet machine)."""
        if self.args.max_load is not None:
            wait_for_quiet(self.args.max_load, self.args.wait_load_s)
        return Section(name)

    def record(self, name: str, section: Section, figures: dict[str, Any]) -> None:
        """Keep a section's figures and write everything so far."""
        self.results["sections"][name] = section.as_dict() | {"figures": figures}
        self.save()

    def save(self) -> None:
        """The figures, the summary and the plots, as they stand."""
        summary.write_summary(self.out, self.results, report.markdown)
        report.plots(self.results, self.out)

    def max_rate(self, domain: Domain) -> float:
        """The one-process at-least-once worker's rate, from this run's throughput section."""
        figures = self.results["sections"].get("throughput", {}).get("figures", {})
        if domain in figures:
            return float(figures[domain]["summary"]["worker"]["at-least-once/1"]["median"])
        given: dict[Domain | None, float] = self.args.max_rate or {}
        rate = given.get(domain, given.get(None))
        if rate is not None:
            return rate
        raise SystemExit(
            f"latency, swap and soak of {domain} need the throughput section or --max-rate"
        )


def run_sections(run: Run) -> None:
    """Every chosen section, in the order of :data:`SECTIONS`."""
    args = run.args
    for name in SECTIONS:
        if name not in args.sections:
            continue
        with run.section(name) as section:
            figures = SECTION_RUNNERS[name](run)
        run.record(name, section, figures)


def throughput_section(run: Run) -> dict[str, Any]:
    """The throughput section, per domain."""
    args = run.args
    return {
        domain: throughput.run(
            run.env,
            run.setup(domain),
            events=events_for(args, domain),
            rounds=args.rounds,
            quix_events=quix_events_for(args, domain),
            profile=run.out / f"profile-{domain}" if args.profile else None,
        )
        for domain in args.domains
    }


def latency_section(run: Run) -> dict[str, Any]:
    """The latency section, per domain."""
    return {
        d: latency.run(
            run.env,
            run.setup(d),
            max_rate=run.max_rate(d),
            seconds=run.args.latency_s,
            client=run.args.harness_client,
            half_loads=run.args.half_loads,
        )
        for d in run.args.domains
    }


def swap_section(run: Run) -> dict[str, Any]:
    """The model swap section, per domain."""
    return {
        d: swap.run(
            run.env,
            run.setup(d),
            rate=run.max_rate(d) / 2,
            seconds=run.args.swap_s,
            client=run.args.harness_client,
        )
        for d in run.args.domains
    }


def soak_section(run: Run) -> dict[str, Any]:
    """The soak section: the first domain only."""
    d = run.args.domains[0]
    return {
        d: soak.run(
            run.env,
            run.setup(d),
            rate=run.max_rate(d) / 2,
            seconds=run.args.soak_s,
            client=run.args.harness_client,
        )
    }


def lowrate_section(run: Run) -> dict[str, Any]:
    """The low-rate section, per domain: absolute rates, no maximum needed."""
    return {
        d: lowrate.run(
            run.env,
            run.setup(d),
            rates=run.args.low_rates,
            seconds=run.args.latency_s,
            rounds=1 if run.args.quick else lowrate.ROUNDS,
            client=run.args.harness_client,
        )
        for d in run.args.domains
    }


def retrain_section(run: Run) -> dict[str, Any]:
    """The retraining section: time against labelled transactions, per size and step."""
    return retrain.run(run.env, run.args.retrain_sizes)


def registry_section(run: Run) -> dict[str, Any]:
    """The registry section: each domain's versions against the run's Redis."""
    rows = 1_000 if run.args.quick else registry.ROWS
    return registry.run(
        run.env, rounds=run.args.registry_rounds, rows=rows, domains=run.args.domains
    )


SECTION_RUNNERS = {
    "throughput": throughput_section,
    "latency": latency_section,
    "swap": swap_section,
    "soak": soak_section,
    "retrain": retrain_section,
    "lowrate": lowrate_section,
    "registry": registry_section,
}


def main(argv: list[str] | None = None) -> Path:
    """Run the harness; the results folder."""
    args = parse_args(argv)
    out = start_run(args.log_level, args.out, logging.ERROR)
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="inferloop-bench-") as tmp,
        environment(Path(tmp), out, args.bootstrap, args.redis_url) as env,
    ):
        run = Run(args, env, out)
        run.save()
        run_sections(run)
    log.info("results in %s (%.0f s)", out, time.monotonic() - started)
    print(out / "results.md")
    summary.announce(out, args.publish)
    return out
