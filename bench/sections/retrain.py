"""Retrain time for 10k, 100k and 1M labelled transactions: first run and after 10 % more.

    ./scripts/bench --sections retrain [--retrain-sizes 10000,100000,1000000]
    uv run python -m bench.sections.retrain [--sizes 10000,100000,1000000] [--out FILE]

The harness's ``retrain`` section (:func:`run`) times each size in a child process of
its own, so the peak resident memory it reports is that size's alone; the standalone
script runs every size in one process (the peak so far, sizes smallest first). Both use
their own Kafka and Redis on free ports (the machine's other services are left alone)
and replay the credit-card data set (read through the domains' loader from
``INFERLOOP_DATA_DIR``) into a labels topic with fresh ids until
each size is reached, then times two runs of the real retrain job per size: the first
(every record read and parsed) and one after 10 % more labels arrived (the local
snapshot cache holds the rest), against the first version as champion. Each run is
split into its steps: reading, fitting (preparing, the fit with its out-of-fold
folds, scoring the holdout), evaluating (the champion on the same holdout, the paired
bootstrap, the report) and registering.
Reading also shows the part spent parsing records (``read.parse``; the rest is the Kafka
client), and each row the process's peak resident memory so far (sizes run smallest
first, so it is that size's peak).
Figures go to stdout as a table, with each size's time per 1,000 rows against the
smallest size measured in the same run and the growth exponent between sizes
(time ~ size^k), and as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import resource
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.env import Env, environment, new_tag
from bench.stats import growth_exponent
from inferloop.connections import make_producer
from inferloop.domains.datasets import Dataset, load_creditcard
from inferloop.domains.replay import labelled_json
from inferloop.registry import Registry
from inferloop.registry.signing import generate_key_pair
from inferloop.retrain.job import RetrainJob, RunRequest
from inferloop.retrain.outcome import RunOutcome
from inferloop.settings import (
    Settings,
    TopicSettings,
)
from inferloop.topics import create_domain_topics, for_settings

log = logging.getLogger("bench.sections.retrain")  # also run as __main__

STEPS = ("read", "fit", "evaluate", "register")
PARTS = ("read.snapshot", "read.parse", "fit.prepare", "fit.fit", "fit.score")
# The data set spans two days; each replayed copy starts where the last one ended.
COPY_SPAN_S = 2 * 24 * 3600.0


def labelled_values(
    data: Dataset, start: int, count: int, tag: str
) -> Iterator[tuple[bytes, bytes]]:
    """(key, labelled JSON) of replayed transactions ``start`` .. ``start + count``, with
    fresh ids: copy k of the data set is shifted k times its time span."""
    size = len(data)
    for n in range(start, start + count):
        copy, i = divmod(n, size)
        event = data.events[i]
        shifted = event.model_copy(
            update={
                "id": f"{tag}-{n:08d}",
                "event_time": event.event_time + timedelta(seconds=copy * COPY_SPAN_S),
            }
        )
        label = "fraud" if data.y[i] else "legit"
        labelled_at = shifted.event_time + timedelta(days=1)
        value = labelled_json(shifted.model_dump_json().encode(), label, labelled_at, "replay")
        yield shifted.id.encode(), value


def produce(settings: Settings, topic: str, values: Iterator[tuple[bytes, bytes]]) -> int:
    """Send every value; return how many."""
    producer = make_producer(
        settings.kafka,
        acks=1,
        linger_ms=50,
        batch_size=1 << 20,
        max_request_size=8 << 20,
    )
    sent = 0
    try:
        for key, value in values:
            producer.send(topic, key=key, value=value)
            sent += 1
        producer.flush(timeout=300)
    finally:
        producer.close()
    return sent


def bench_settings(
    base: Settings, root: Path, size: int, *, fit_threads: int, folds: int
) -> Settings:
    """Settings of one size: its own topics, key prefix, cache, keys and reports."""
    keys = generate_key_pair(root / f"keys-{size}", "retrain")
    return base.model_copy(
        update={
            "topics": TopicSettings(prefix=f"bench{size}-", partitions=4),
            "redis": base.redis.model_copy(update={"key_prefix": f"bench{size}"}),
            "registry": base.registry.model_copy(
                update={
                    "signing_key_path": keys.private_path,
                    "verify_key_paths": (keys.public_path,),
                }
            ),
            "retrain": base.retrain.model_copy(
                update={
                    "snapshot_dir": root / f"snapshots-{size}",
                    "reports_dir": root / f"reports-{size}",
                    "fit_threads": fit_threads,
                    "folds": folds,
                }
            ),
        }
    )


def row(size: int, run: str, outcome: RunOutcome, produce_s: float) -> dict[str, Any]:
    """One line of the table."""
    steps = {k: outcome.durations_s.get(k, 0.0) for k in (*STEPS, *PARTS)}
    return {
        "size": size,
        "run": run,
        "total_s": round(outcome.duration_s, 2),
        **steps,
        "records_from_kafka": outcome.records_read,
        "examples": outcome.examples,
        "holdout_positives": outcome.holdout_positives,
        "decision": outcome.outcome,
        "candidate": outcome.candidate,
        "champion": outcome.champion,
        "produce_s": round(produce_s, 1),
        # The process's peak so far: sizes run smallest first, so it is this size's.
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def bench_size(
    base: Settings, root: Path, data: Dataset, size: int, *, fit_threads: int = 1, folds: int = 5
) -> list[dict[str, Any]]:
    """Two runs of one size: the first, then one after 10 % more labels."""
    settings = bench_settings(base, root, size, fit_threads=fit_threads, folds=folds)
    create_domain_topics(settings, "transactions")
    topic = for_settings(settings, "transactions").labels
    rows = []
    with Registry.from_settings(settings) as registry:
        job = RetrainJob(settings, registry, role="bench")
        started = time.perf_counter()
        produce(settings, topic, labelled_values(data, 0, size, f"b{size}"))
        produced = time.perf_counter() - started
        first = decided(job.run(RunRequest("transactions", trigger="bench", force=True)))
        rows.append(row(size, "first", first, produced))
        if first.outcome != "promoted" and first.version is not None:
            # The +10 % run is timed against a champion, as in production: the first
            # version is made champion by hand when the gate held it back (too few
            # positives in a small holdout).
            registry.promote(
                "transactions",
                first.version,
                expected_current=None,
                reason=f"benchmark: champion for the +10% run ({first.outcome})",
            )
        more = size // 10
        started = time.perf_counter()
        produce(settings, topic, labelled_values(data, size, more, f"b{size}"))
        produced = time.perf_counter() - started
        second = decided(job.run(RunRequest("transactions", trigger="bench", force=True)))
        rows.append(row(size, "+10%", second, produced))
    return rows


def decided(outcome: RunOutcome) -> RunOutcome:
    """``outcome``, logged; an error when the run reached no decision (a failed or
    skipped run's time measures nothing)."""
    log.info("%s", outcome.summary_line())
    if not outcome.successful or outcome.outcome == "skipped":
        raise RetrainBenchError(f"the run reached no decision: {outcome.summary_line()}")
    return outcome


class RetrainBenchError(RuntimeError):
    """A retrain run of the benchmark failed or was skipped."""


def print_table(rows: list[dict[str, Any]]) -> None:
    """The figures, and time per 1,000 examples against the smallest size."""
    # Per example of the data set (the +10 % run has 1.1 times the size).
    base = {r["run"]: r["total_s"] / r["examples"] for r in rows if r["size"] == rows[0]["size"]}
    columns = (
        "size",
        "run",
        "total_s",
        *STEPS,
        "read.parse",
        "fit.fit",
        "records_from_kafka",
        "peak_rss_mb",
        "decision",
    )
    print(" | ".join(f"{c:>14}" for c in (*columns, "s per 1k", "vs smallest")))
    for r in rows:
        per_row = r["total_s"] / r["examples"]
        cells = [
            f"{r[c]:>14}" if not isinstance(r[c], float) else f"{r[c]:>14.2f}" for c in columns
        ]
        cells += [f"{per_row * 1000:>14.3f}", f"{per_row / base[r['run']]:>14.2f}"]
        print(" | ".join(cells))
    for g in growth(rows):
        print(f"growth {g['run']} {g['from']} -> {g['to']}: time ~ size^{g['exponent']:.2f}")


def growth(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The exponent k of total time ~ examples^k between consecutive sizes, per kind of
    run (1 = linear)."""
    found = []
    for run in ("first", "+10%"):
        same = sorted((r for r in rows if r["run"] == run), key=lambda r: r["examples"])
        for a, b in itertools.pairwise(same):
            k = growth_exponent([a["examples"], b["examples"]], [a["total_s"], b["total_s"]])
            if not math.isnan(k):
                found.append({"run": run, "from": a["size"], "to": b["size"], "exponent": k})
    return found


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """One size, in a child process of the harness (``bench_child retrain``)."""
    settings = Settings(**spec["settings"])
    rows = bench_size(
        settings,
        Path(spec["root"]),
        load_creditcard(settings.data_dir),
        int(spec["size"]),
        fit_threads=int(spec["fit_threads"]),
        folds=int(spec["folds"]),
    )
    return {"rows": rows}


def run(env: Env, sizes: Sequence[int], *, fit_threads: int = 1, folds: int = 5) -> dict[str, Any]:
    """The harness's retrain section: each size in a child of its own, smallest first."""
    settings = env.settings(new_tag("retrain"), "bench-retrain")
    rows: list[dict[str, Any]] = []
    for size in sorted(sizes):
        child = env.spawn(
            "retrain",
            {
                "settings": settings.model_dump(mode="json"),
                "root": str(env.home / "retrain"),
                "size": size,
                "fit_threads": fit_threads,
                "folds": folds,
            },
            f"retrain-{size}",
        )
        # A first 1M run took 363 s on a loaded machine before the array parser.
        rows.extend(child.wait(timeout_s=600 + size / 500)["rows"])
        log.info("retrain %d rows: %s", size, [(r["run"], r["total_s"]) for r in rows[-2:]])
    return {"fit_threads": fit_threads, "folds": folds, "rows": rows, "growth": growth(rows)}


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--fit-threads", type=int, default=1)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("results/bench_retrain.json"))
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    sizes = [int(s) for s in args.sizes.split(",")]
    data = load_creditcard(Settings().data_dir)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-retrain-") as tmp:
        root = Path(tmp)
        with environment(root, root) as env:
            base = env.settings(new_tag("retrain"), "bench-retrain")
            for size in sizes:
                rows.extend(
                    bench_size(
                        base, root, data, size, fit_threads=args.fit_threads, folds=args.folds
                    )
                )
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figures = {"fit_threads": args.fit_threads, "folds": args.folds, "rows": rows}
    args.out.write_text(json.dumps(figures | {"growth": growth(rows)}, indent=2))


if __name__ == "__main__":
    main()
