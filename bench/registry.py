"""Measure the registry's hot path and load path against a Redis of its own.

    uv run --frozen python -m bench.registry [--rounds 5000]

(from the repository root). It starts a private
Redis (Debian's ``redis-server``, the same configuration as ``inferloop services up``:
append-only, fsync always) on a free port, fits each domain's own pipeline on synthetic
events, and prints:

- ``resolve`` latency (one ``HGET``) beside a ``PING`` measured in the same run, the
  floor of any round trip;
- registration time, artifact size, and load times: cold (fetch, verify signature and
  digest, unpickle, golden check) and cached (the same version again in the process).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from inferloop.domains import get_domain
from inferloop.local.process import free_port
from inferloop.local.redis import LocalRedis
from inferloop.registry.registry import Registry
from inferloop.registry.signing import generate_key_pair
from inferloop.settings import RedisSettings, RegistrySettings, Settings

_WORDS = ["meeting", "report", "lunch", "free", "prize", "cash", "click", "review", "draft"]


def _emails(n: int, rng: np.random.Generator) -> tuple[list[dict[str, Any]], np.ndarray]:
    y = (rng.random(n) < 0.3).astype(np.int8)
    events = [
        {
            "id": f"e{i}",
            "event_time": "2024-05-01T12:00:00+00:00",
            "schema_version": 1,
            "sender": "promo@deals.biz" if label else "ann@corp.example",
            "subject": f"message {i}",
            "body": " ".join(rng.choice(_WORDS[3:7] if label else _WORDS, size=40)),
        }
        for i, label in enumerate(y)
    ]
    return events, y


def _transactions(n: int, rng: np.random.Generator) -> tuple[list[dict[str, Any]], np.ndarray]:
    y = (rng.random(n) < 0.05).astype(np.int8)
    features = rng.normal(size=(n, 28)) + y[:, None] * 1.5
    events = [
        {
            "id": f"t{i}",
            "event_time": "2013-09-01T00:00:00+00:00",
            "schema_version": 1,
            "amount": float(rng.gamma(2.0, 40.0)),
        }
        | {f"v{k + 1}": float(features[i, k]) for k in range(28)}
        for i in range(n)
    ]
    return events, y


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _percentiles(samples_s: list[float]) -> str:
    ordered = sorted(samples_s)
    p50 = statistics.median(ordered) * 1e6
    p99 = ordered[int(len(ordered) * 0.99) - 1] * 1e6
    return f"p50 {p50:7.1f} us   p99 {p99:7.1f} us"


def _timed(call: Callable[[], object], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def _bench_domain(settings: Settings, domain: str, rows_n: int, cold_rounds: int = 7) -> None:
    spec = get_domain(domain)
    make = _emails if domain == "emails" else _transactions
    events, y = make(rows_n, np.random.default_rng(0))
    batch = spec.validate_batch([json.dumps(e).encode() for e in events])
    pipeline = spec.build_pipeline(0).fit(spec.to_rows(batch.events), y)
    with Registry.from_settings(settings) as registry:
        started = time.perf_counter()
        stored = registry.register(
            domain, pipeline, domain=domain, threshold=0.5, input_schema_version=1,
            golden_events=events[:16], params={}, metrics={}, champion_metrics=None,
            lineage={"rows": rows_n}, created_by="bench",
        )  # fmt: skip
        register_s = time.perf_counter() - started
    cold = []
    for _ in range(cold_rounds):
        with Registry.from_settings(settings) as fresh:
            cold.append(fresh.load(domain, stored.version))
            cached = _timed(lambda: fresh.load(domain, stored.version), 1000)

    def median_s(field: str) -> float:
        return float(statistics.median(float(getattr(loaded, field)) for loaded in cold))

    _say(
        f"{domain:13s} artifact {stored.artifact_size / 1e6:5.2f} MB, resident "
        f"{cold[0].resident_bytes / 1e6:5.1f} MB; register {register_s:5.2f} s; cold load "
        f"(median of {cold_rounds}) {median_s('total_time_s') * 1e3:6.1f} ms = unpickle "
        f"{median_s('load_time_s') * 1e3:5.1f} ms + golden check "
        f"{median_s('check_time_s') * 1e3:5.1f} ms + fetch and verify; cached load p50 "
        f"{statistics.median(cached) * 1e6:4.1f} us"
    )


def main() -> None:
    """Run the measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5000)
    parser.add_argument("--rows", type=int, default=5000, help="events to fit each model on")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="registry-bench-") as home:
        server = LocalRedis(home=Path(home) / "redis", port=free_port())
        server.start(timeout_s=30)
        try:
            keys = generate_key_pair(Path(home) / "keys", "bench")
            settings = Settings(
                redis=RedisSettings(url=server.url, key_prefix="bench"),
                registry=RegistrySettings(
                    signing_key_path=keys.private_path, verify_key_paths=(keys.public_path,)
                ),
            )
            _say(f"Redis {server.version()} at {server.url} (append-only, fsync always)")
            for domain in ("emails", "transactions"):
                _bench_domain(settings, domain, args.rows)
            with Registry.from_settings(settings) as registry:
                registry.promote("emails", 1, expected_current=None, reason="bench")
                registry.resolve("emails")
                ping = _timed(registry.client.ping, args.rounds)
                resolve = _timed(lambda: registry.resolve("emails"), args.rounds)
            _say(f"PING    (baseline, {args.rounds} rounds): {_percentiles(ping)}")
            _say(f"resolve (one HGET, {args.rounds} rounds): {_percentiles(resolve)}")
            ratio = statistics.median(resolve) / statistics.median(ping)
            _say(f"resolve / PING (p50): {ratio:.2f}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
