"""``inferloop score`` against ``inferloop evaluate``'s offline scoring rate in the same
run, and its peak memory at two file sizes (issue 37).

For each domain: a pipeline is fitted on part of a real data set, registered (signed)
and promoted in a Redis of its own; ``domains.evaluation.scoring_rate`` (what
``evaluate`` reports as its scoring rate: validate, rows and score in batches of 1,000
on one core, JSON bytes already in memory) is measured with it on the other events; then
``inferloop score DOMAIN --input FILE --output FILE --json`` runs as a child process on
a JSON Lines file of N events (the data set repeated with new ids) and on one of N/10,
and the child's peak RSS is measured by ``/usr/bin/time`` (not by this process's
``wait4``: Linux carries a forking process's peak RSS over ``exec`` into the child's, so
every child would report this process's own 680 MiB). The child is limited to one thread of
BLAS/OpenMP (``OMP_NUM_THREADS=1``) like the evaluate measurement.

    uv run --frozen python -m bench.score [--transactions 1000000] [--emails 200000]
        [--data-dir ../shared/data] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from inferloop.domains import get_domain
from inferloop.domains.datasets import load_dataset
from inferloop.domains.evaluation import scoring_rate
from inferloop.local.process import free_port
from inferloop.local.redis import LocalRedis
from inferloop.registry import Registry
from inferloop.registry.signing import generate_key_pair
from inferloop.settings import RedisSettings, RegistrySettings, Settings

DATASETS = {"transactions": "creditcard", "emails": "sms"}
FIT_EVENTS = 40_000
RATE_EVENTS = 20_000
SMALL_SHARE = 10
TIME = "/usr/bin/time"


def _champion(settings: Settings, domain: str, data_dir: Path) -> tuple[Any, list[Any], Any]:
    """Fit, register and promote a model of ``domain``; (pipeline, events, spec)."""
    spec = get_domain(domain)
    dataset = load_dataset(DATASETS[domain], data_dir)
    events = list(dataset.events[: FIT_EVENTS + RATE_EVENTS])
    fit = min(FIT_EVENTS, len(events) * 3 // 4)
    pipeline = spec.build_pipeline(42)
    with threadpool_limits(limits=1):
        pipeline.fit(spec.to_rows(events[:fit]), dataset.y[:fit])
    with Registry.from_settings(settings) as registry:
        version = registry.register(
            domain, pipeline, domain=domain, threshold=0.5, input_schema_version=1,
            golden_events=[e.model_dump(mode="json") for e in events[:8]], params={},
            metrics={}, champion_metrics=None, lineage={"source": "bench.score"},
            created_by="bench.score",
        )  # fmt: skip
        registry.promote(domain, version.version, expected_current=None, reason="bench")
    return pipeline, events, spec


def _write_file(path: Path, events: list[Any], n: int) -> None:
    """``n`` events, the given ones repeated with new ids, one JSON object a line."""
    base = [e.model_dump(mode="json") for e in events]
    with path.open("w") as handle:
        for i, event in zip(range(n), itertools.cycle(base), strict=False):
            handle.write(json.dumps(event | {"id": f"{event['id']}-{i}"}) + "\n")


def _score(settings: Settings, domain: str, source: Path, out: Path) -> dict[str, Any]:
    """Run ``inferloop score`` as a child; its JSON summary plus peak RSS and wall time."""
    rss_path = out.with_suffix(".rss")
    argv = [TIME, "-f", "%M", "-o", str(rss_path),
            sys.executable, "-m", "inferloop", "--log-level", "WARNING", "score", domain,
            "--input", str(source), "--output", str(out), "--json", "--no-progress"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERLOOP_")}
    env |= settings.to_env() | {"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    summary_path = out.with_suffix(".summary.json")
    started = time.perf_counter()
    with summary_path.open("wb") as summary_file:
        returncode = subprocess.run(argv, env=env, stdout=summary_file, check=False).returncode
    wall_s = time.perf_counter() - started
    if returncode != 0:
        raise SystemExit(f"inferloop score failed ({returncode})")
    summary: dict[str, Any] = json.loads(summary_path.read_bytes())
    summary["wall_s"] = round(wall_s, 1)
    summary["peak_rss_mib"] = round(int(rss_path.read_text().split()[-1]) / 1024, 1)
    summary["input_mib"] = round(source.stat().st_size / 2**20, 1)
    return summary


def measure(settings: Settings, domain: str, n: int, data_dir: Path, work: Path) -> dict[str, Any]:
    """One domain: evaluate's scoring rate, and score on N and N/10 events."""
    pipeline, events, spec = _champion(settings, domain, data_dir)
    held_out = events[min(FIT_EVENTS, len(events) * 3 // 4) :]
    rate = scoring_rate(spec, pipeline, held_out)
    result: dict[str, Any] = {
        "domain": domain,
        "dataset": DATASETS[domain],
        "evaluate_events_per_s": round(rate.events_per_s, 1),
        "evaluate_scorer": rate.scorer,
        "runs": [],
    }
    for size in (n // SMALL_SHARE, n):
        source = work / f"{domain}-{size}.jsonl"
        _write_file(source, events, size)
        run = _score(settings, domain, source, work / f"{domain}-{size}.out.jsonl")
        run["events"] = size
        run["ratio_to_evaluate"] = round(run["events_per_s"] / rate.events_per_s, 2)
        result["runs"].append(run)
        source.unlink()
        (work / f"{domain}-{size}.out.jsonl").unlink()
    return result


def _print(result: dict[str, Any]) -> None:
    print(
        f"{result['domain']} ({result['dataset']}): evaluate's scoring rate "
        f"{result['evaluate_events_per_s']:,.0f} events/s ({result['evaluate_scorer']})"
    )
    for run in result["runs"]:
        print(
            f"  score {run['events']:>9,} events ({run['input_mib']:,.0f} MiB): "
            f"{run['events_per_s']:>9,.0f} events/s = {run['ratio_to_evaluate']:.2f} x "
            f"evaluate, scorer {run['scorer']}, wall {run['wall_s']} s, "
            f"peak RSS {run['peak_rss_mib']:,.0f} MiB"
        )


def main() -> None:
    """Run the measurement and print it (and its JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=1_000_000)
    parser.add_argument("--emails", type=int, default=200_000)
    parser.add_argument("--data-dir", type=Path, default=Settings().data_dir)
    parser.add_argument("--json", action="store_true", help="Print the results as JSON too.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        work = Path(tmp)
        redis = LocalRedis(home=work / "redis", port=free_port())
        redis.start(timeout_s=30)
        try:
            pair = generate_key_pair(work / "keys", "bench")
            settings = Settings(
                redis=RedisSettings(url=redis.url, key_prefix="bench-score"),
                registry=RegistrySettings(
                    signing_key_path=pair.private_path, verify_key_paths=(pair.public_path,)
                ),
            )
            results = [
                measure(settings, domain, n, args.data_dir, work)
                for domain, n in (("transactions", args.transactions), ("emails", args.emails))
                if n > 0
            ]
        finally:
            redis.stop()
    for result in results:
        _print(result)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
