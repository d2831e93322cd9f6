"""The registry's hot path and load path: the ``registry`` section (not run by default).

    ./scripts/bench --sections registry [--registry-rounds 5000]

Against the run's Redis (the configuration of ``inferloop services up``: append-only,
fsync always), under a key prefix of its own, it fits each domain's own pipeline on
synthetic events and measures:

- ``resolve`` latency (one ``HGET``) beside a ``PING`` measured in the same run, the
  floor of any round trip;
- registration time, artifact size, and load times: cold (fetch, verify signature and
  digest, unpickle, golden check) and cached (the same version again in the process).
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.env import Env, new_tag
from inferloop.domains import get_domain
from inferloop.registry.registry import Registry
from inferloop.settings import Settings

log = logging.getLogger(__name__)

ROUNDS = 5000
ROWS = 5000
COLD_ROUNDS = 7
CACHED_ROUNDS = 1000
DOMAINS = ("emails", "transactions")

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


def percentiles_us(samples_s: list[float]) -> dict[str, float]:
    """p50 and p99 of ``samples_s``, in microseconds."""
    ordered = sorted(samples_s)
    p99 = ordered[max(int(len(ordered) * 0.99) - 1, 0)]
    return {"p50_us": statistics.median(ordered) * 1e6, "p99_us": p99 * 1e6}


def _timed(call: Callable[[], object], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def measure_domain(settings: Settings, domain: str, rows: int) -> dict[str, Any]:
    """Register a freshly fitted version of ``domain``; its size and load times."""
    spec = get_domain(domain)
    make = _emails if domain == "emails" else _transactions
    events, y = make(rows, np.random.default_rng(0))
    batch = spec.validate_batch([json.dumps(e).encode() for e in events])
    pipeline = spec.build_pipeline(0).fit(spec.to_rows(batch.events), y)
    with Registry.from_settings(settings) as registry:
        started = time.perf_counter()
        stored = registry.register(
            domain, pipeline, domain=domain, threshold=0.5, input_schema_version=1,
            golden_events=events[:16], params={}, metrics={}, champion_metrics=None,
            lineage={"rows": rows}, created_by="bench",
        )  # fmt: skip
        register_s = time.perf_counter() - started
    cold = []
    for _ in range(COLD_ROUNDS):
        with Registry.from_settings(settings) as fresh:
            cold.append(fresh.load(domain, stored.version))
            cached = _timed(lambda: fresh.load(domain, stored.version), CACHED_ROUNDS)

    def median_ms(field: str) -> float:
        return float(statistics.median(float(getattr(loaded, field)) for loaded in cold)) * 1e3

    figures = {
        "version": stored.version,
        "artifact_mb": stored.artifact_size / 1e6,
        "resident_mb": cold[0].resident_bytes / 1e6,
        "register_s": register_s,
        "cold_load_ms": median_ms("total_time_s"),
        "unpickle_ms": median_ms("load_time_s"),
        "golden_check_ms": median_ms("check_time_s"),
        "cached_load_p50_us": statistics.median(cached) * 1e6,
    }
    log.info("registry %s: %s", domain, figures)
    return figures


def run(
    env: Env,
    rounds: int = ROUNDS,
    rows: int = ROWS,
    key_prefix: str | None = None,
    domains: tuple[str, ...] = DOMAINS,
) -> dict[str, Any]:
    """The section's figures: per domain, then ``resolve`` of the first against ``PING``;
    its keys under ``key_prefix`` (default: a new one)."""
    tag = new_tag("registry")
    settings = env.signing(env.settings(tag, key_prefix=key_prefix or tag))
    figures = {d: measure_domain(settings, d, rows) for d in domains}
    first = domains[0]
    with Registry.from_settings(settings) as registry:
        version = figures[first]["version"]
        registry.promote(first, version, expected_current=None, reason="bench")
        registry.resolve(first)
        ping = _timed(registry.client.ping, rounds)
        resolve = _timed(lambda: registry.resolve(first), rounds)
    ping_us, resolve_us = percentiles_us(ping), percentiles_us(resolve)
    return {
        "rows": rows,
        "rounds": rounds,
        "cold_rounds": COLD_ROUNDS,
        "domains": figures,
        "resolved": first,
        "ping": ping_us,
        "resolve": resolve_us,
        "resolve_over_ping": resolve_us["p50_us"] / ping_us["p50_us"],
    }
