"""The monitor's rate and state size on real data and real services (not run by CI).

``python -m bench.monitor_rate [--events N] [--domains transactions,emails]``

Starts Kafka and Redis on free ports, fits each domain's own pipeline (transactions:
the full tree model on the oldest 20 % of the credit-card data; emails: the SMS
collection's oldest 20 %) twice (seeds 1 and 2), publishes ``N`` labelled events of
the rest to the labels topic, and runs one in-process monitor over them with one
watched version (the champion) and with two (the second promoted over the first: the
previous champion is re-scored on probation). Reports labelled events re-scored and
stored per second (first batch to last), the time spent in batches (the rest is reading
and the evaluations that fell in), one evaluation over the final window timed, the
window's bytes in Redis per event, and a digest of the stored state (compare two
commits' with ``--partitions 1``: the same labels must store the same bytes).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import logging
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import redis

from bench.env import environment, new_tag
from inferloop.connections import make_producer
from inferloop.domains import get_domain
from inferloop.domains.datasets import Dataset, deduplicate, load_dataset
from inferloop.keys import Keys
from inferloop.monitor.evaluation import evaluate
from inferloop.monitor.service import Monitor
from inferloop.monitor.state import WRITER_FIELD
from inferloop.registry import Registry
from inferloop.settings import Domain, KafkaSettings, RedisSettings, Settings, TopicSettings
from inferloop.topics import create_domain_topics, for_settings

log = logging.getLogger("bench.monitor_rate")

DATASET = {"emails": "sms", "transactions": "creditcard"}
TRAIN_SHARE = 0.2


def fit_versions(
    domain: Domain, data: Dataset, cache: Path | None = None
) -> tuple[list[Any], Dataset]:
    """Two fitted pipelines (seeds 1, 2) on the oldest share, and the rest (the
    pipelines read from ``cache`` when it holds them, else stored there)."""
    spec = get_domain(domain)
    cut = int(len(data) * TRAIN_SHARE)
    train, rest = data.subset(np.arange(cut)), data.subset(np.arange(cut, len(data)))
    path = None if cache is None else cache / f"{domain}-pipelines.joblib"
    if path is not None and path.exists():
        return list(joblib.load(path)), rest
    rows = spec.to_rows(train.events)
    pipelines = []
    for seed in (1, 2):
        started = time.perf_counter()
        pipelines.append(spec.build_pipeline(seed).fit(rows, train.y))
        log.info("%s seed %d fitted in %.1f s", domain, seed, time.perf_counter() - started)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(pipelines, path)
    return pipelines, rest


def register(registry: Registry, domain: Domain, pipeline: Any, golden: list[Any]) -> None:
    """Register ``pipeline`` and promote it to champion."""
    spec = get_domain(domain)
    version = registry.register(
        domain, pipeline, domain=domain, threshold=0.5, input_schema_version=spec.schema_version,
        golden_events=golden, params={}, metrics={}, champion_metrics=None,
        lineage={"source": "bench.monitor_rate"}, created_by="bench",
    )  # fmt: skip
    registry.promote(
        domain, version.version, expected_current=registry.resolve(domain), reason="bench"
    )


def publish_labels(
    settings: Settings, domain: Domain, rest: Dataset, n: int, labelled_at: str | None = None
) -> int:
    """``n`` labelled events of ``rest`` (cycled, ids made unique) on the labels topic,
    labelled now (or at ``labelled_at``)."""
    spec, topic = get_domain(domain), for_settings(settings, domain).labels
    now = labelled_at or datetime.now(UTC).isoformat()
    producer = make_producer(settings.kafka, acks="all", linger_ms=20, batch_size=256 * 1024)
    for i in range(n):
        event = rest.events[i % len(rest)].model_dump(mode="json")
        event["id"] = f"{event['id']}-{i}"
        event |= {"label": spec.label_names[int(rest.y[i % len(rest)])], "labelled_at": now}
        producer.send(topic, key=event["id"].encode(), value=json.dumps(event).encode())
    producer.flush(120)
    producer.close()
    return n


def measure(
    settings: Settings, domain: Domain, n: int, profile: Path | None = None
) -> dict[str, Any]:
    """Run a monitor over the labels topic; its rate and the window's size (the run
    profiled into ``profile`` when given)."""
    monitor = Monitor(settings, domain)
    profiler = cProfile.Profile() if profile is not None else None
    if profiler is not None:
        profiler.enable()
    summary = monitor.run(until_idle_s=10.0)
    if profiler is not None and profile is not None:
        profiler.disable()
        profile.parent.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(str(profile))
    assert summary.first_batch_at is not None
    assert summary.last_batch_at is not None
    elapsed = summary.last_batch_at - summary.first_batch_at
    started = time.perf_counter()
    evaluate(
        monitor.intake, monitor.versions.by_role, monitor.counts, settings.monitor, time.time()
    )
    evaluate_s = time.perf_counter() - started
    with redis.Redis.from_url(settings.redis.url) as client:
        key = Keys(settings.redis.key_prefix).monitor_window(domain)
        size = int(client.memory_usage(key, samples=0) or 0)
        events = int(client.llen(key))
        digest = state_digest(client, Keys(settings.redis.key_prefix), domain)
    return {
        "labels": summary.labels, "seconds": round(elapsed, 2),
        "per_s": round(summary.labels / elapsed) if elapsed else None,
        "batches": summary.batches, "batch_s": round(_batch_seconds(monitor), 2),
        "evaluate_s": round(evaluate_s, 2),
        "window_events": events, "window_bytes": size,
        "bytes_per_event": round(size / events, 1) if events else None,
        "state_sha256": digest,
    }  # fmt: skip


def _batch_seconds(monitor: Monitor) -> float:
    """The run's time in its batches (read, score, store): the batch histogram's sum."""
    for metric in monitor.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == "inferloop_monitor_batch_seconds_sum":
                return float(sample.value)
    return 0.0


def state_digest(client: redis.Redis, keys: Keys, domain: Domain) -> str:
    """SHA-256 of everything the monitor stored that does not depend on time or on
    which process wrote it: the window (entry bytes in order), the counters, the served
    sample, the drift detectors and the offsets. With one partition the window's order
    is the log's, so two runs over the same labels store the same bytes."""
    parts: list[Any] = [client.lrange(keys.monitor_window(domain), 0, -1)]
    for key in (keys.monitor_counts(domain), keys.monitor_served(domain),
                keys.monitor_offsets(domain)):  # fmt: skip
        fields = client.hgetall(key)
        fields.pop(WRITER_FIELD.encode(), None)
        parts.append(sorted(fields.items()))
    parts.append(client.hget(keys.monitor_detectors(domain), "drift"))
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def run_domain(
    base: Settings, domain: Domain, n: int, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """One version, then two (or only ``--versions``), on fresh topics and keys each."""
    data, _ = deduplicate(load_dataset(DATASET[domain], args.data_dir))
    pipelines, rest = fit_versions(domain, data, args.fit_cache)
    golden = [e.model_dump(mode="json") for e in rest.events[:16]]
    results = []
    for versions in args.versions:
        tag = new_tag("mon")
        settings = base.model_copy(update={
            "topics": TopicSettings(prefix=f"{tag}-", partitions=args.partitions),
            "redis": base.redis.model_copy(update={"key_prefix": tag}),
        })  # fmt: skip
        create_domain_topics(settings, domain)
        with Registry.from_settings(settings) as registry:
            for pipeline in pipelines[:versions]:
                register(registry, domain, pipeline, golden)
        publish_labels(settings, domain, rest, n, args.labelled_at)
        profile = None if args.profile is None else args.profile / f"{domain}-{versions}.prof"
        result = {
            "domain": domain, "versions": versions, **measure(settings, domain, n, profile)
        }  # fmt: skip
        log.info("%s", result)
        results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--domains", default="transactions,emails")
    parser.add_argument("--data-dir", type=Path, default=Settings().data_dir)
    parser.add_argument("--versions", type=lambda v: [int(x) for x in v.split(",")],
                        default=[1, 2], help="watched versions per run, e.g. 2 or 1,2")  # fmt: skip
    parser.add_argument("--fit-cache", type=Path, default=None,
                        help="keep the fitted pipelines here, reuse them (A/B)")  # fmt: skip
    parser.add_argument("--partitions", type=int, default=4,
                        help="of the labels topic (1: the same bytes stored each run)")  # fmt: skip
    parser.add_argument("--labelled-at", default=None,
                        help="every label's time (ISO 8601; default now): fixed, with "
                             "--partitions 1, two runs store the same bytes")  # fmt: skip
    parser.add_argument("--profile", type=Path, default=None,
                        help="a folder for a cProfile of each monitor run")  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory() as home, environment(Path(home), Path(home)) as env:
        base = Settings(
            kafka=KafkaSettings(bootstrap_servers=env.bootstrap),
            redis=RedisSettings(url=env.redis_url),
        )
        section = base.registry.model_copy(update={
            "signing_key_path": env.keys.private_path, "verify_key_paths": (env.keys.public_path,),
        })  # fmt: skip
        # Probation never ends here, so two versions are scored from first to last.
        monitor = base.monitor.model_copy(
            update={"metrics_port": 0, "lease_s": 60.0, "probation_positives": 10**9}
        )
        base = base.model_copy(update={"registry": section, "monitor": monitor})
        results = [
            r for d in args.domains.split(",") for r in run_domain(base, d, args.events, args)
        ]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
