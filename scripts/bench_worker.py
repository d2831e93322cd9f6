"""Benchmark the transactions worker against a pass-through loop and offline scoring.

Everything is measured in the same run, on a real local broker (started here on free
ports unless ``--bootstrap`` is given):

- pass-through: a pipelined loop that consumes the events, sends each one on, and
  commits a batch's offsets once its sends are acknowledged (no validation, no model);
- scoring: the champion pipeline alone on the same message values, JSON validation
  included (``validate_batch`` + ``to_rows`` + ``predict_proba``), batches of 1,000;
- the worker: ``inferloop.worker.Worker`` at-least-once, validation, one vectorised
  scoring call per batch, JSON predictions, commits.

One process does I/O and scoring on one interpreter, so its bound is
``1 / (1/pass-through + 1/scoring)``; the worker's figure is reported against it.

    uv run --frozen python -P scripts/bench_worker.py [--events 100000] [--profile FILE]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import logging
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import crc32c
import kafka.record.util as record_util
import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kafka import OffsetAndMetadata, TopicPartition
from pyinstrument import Profiler
from threadpoolctl import threadpool_limits

from inferloop.connections import admin_client, make_consumer, make_producer
from inferloop.domains import get_domain
from inferloop.local.kafka import KafkaJars, LocalKafka
from inferloop.local.process import free_port
from inferloop.local.redis import LocalRedis
from inferloop.local.services import LocalServices
from inferloop.registry import Registry
from inferloop.settings import (
    KafkaSettings,
    LocalServicesSettings,
    RedisSettings,
    RegistrySettings,
    Settings,
    TopicSettings,
    WorkerSettings,
)
from inferloop.topics import create_domain_topics, for_settings
from inferloop.worker.loop import RunLimits, Worker

log = logging.getLogger("bench_worker")

EPOCH = datetime(2013, 9, 1, tzinfo=UTC)
BATCH = 1000


# -- data ------------------------------------------------------------------------------
def creditcard_rows(data_dir: Path, limit: int) -> list[list[str]]:
    """The first ``limit`` rows of the ULB credit-card data (header dropped)."""
    path = data_dir / "creditcard" / "creditcard_dev.csv.gz"
    with gzip.open(path, "rt", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        rows = []
        for row in reader:
            rows.append(row)
            if len(rows) >= limit:
                break
    return rows


def event_bytes(i: int, row: list[str]) -> bytes:
    """One transaction event (about 710 bytes) from a CSV row, features to 10 digits."""
    event: dict[str, Any] = {
        "id": f"tx-{i:07d}",
        "event_time": (EPOCH + timedelta(seconds=float(row[0]))).isoformat(),
        "schema_version": 1,
        "amount": float(row[29]),
        "card_id": f"card-{i % 5000}",
    }
    event.update({f"v{k}": float(f"{float(row[k]):.10g}") for k in range(1, 29)})
    return json.dumps(event).encode()


def labelled(rows: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Feature rows (v1..v28, amount) and labels for training."""
    x = np.array([[float(v) for v in r[1:30]] for r in rows], dtype=np.float64)
    y = np.array([int(r[30]) for r in rows], dtype=np.int8)
    return x, y


# -- services ----------------------------------------------------------------------------
@contextmanager
def services(args: argparse.Namespace, home: Path) -> Iterator[tuple[str, str]]:
    """(bootstrap servers, Redis URL): the given ones, or a broker and Redis started here."""
    if args.bootstrap:
        yield args.bootstrap, args.redis_url
        return
    defaults = LocalServicesSettings()
    local = LocalServices(
        kafka=LocalKafka(
            jars=KafkaJars(defaults.kafka_version, defaults.cache_dir),
            home=home / "kafka",
            port=free_port(),
            controller_port=free_port(),
        ),
        redis=LocalRedis(home=home / "redis", port=free_port()),
        start_timeout_s=120.0,
    )
    try:
        states = local.up()
        log.info("services: %s", ", ".join(f"{s.name} {s.version} at {s.address}" for s in states))
        yield local.kafka.address, local.redis.url
    finally:
        local.down()


def bench_settings(bootstrap: str, redis_url: str, home: Path, partitions: int) -> Settings:
    """Settings for this run: own topic prefix and key prefix, a signing key."""
    key = Ed25519PrivateKey.generate()
    key_path = home / "signing.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    tag = uuid.uuid4().hex[:8]
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        redis=RedisSettings(url=redis_url, key_prefix=f"bench-{tag}"),
        topics=TopicSettings(prefix=f"bench-{tag}-", partitions=partitions),
        registry=RegistrySettings(signing_key_path=key_path),
        worker=WorkerSettings(metrics_port=0),
    )


def publish(settings: Settings, topic: str, values: list[bytes]) -> None:
    """Send every value (key = its event id) and wait for all to be acknowledged."""
    producer = make_producer(settings.kafka, acks="all", linger_ms=20, batch_size=512 * 1024)
    try:
        for value in values:
            key = value[8:20]  # '{"id": "tx-0000001"' -> the id's bytes
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=120)
    finally:
        producer.close()


# -- the three measurements ---------------------------------------------------------------
def pass_through(settings: Settings, source: str, sink: str, expected: int) -> float:
    """Messages per second of the pipelined consume-send-commit loop, no processing."""
    ws = settings.worker
    consumer = make_consumer(
        settings.kafka, source, group_id=f"{settings.topics.prefix}passthrough",
        auto_offset_reset="earliest", max_poll_records=ws.max_batch_size,
        isolation_level="read_committed",
    )  # fmt: skip
    producer = make_producer(
        settings.kafka, acks="all", linger_ms=ws.linger_ms, batch_size=ws.producer_batch_bytes
    )
    in_flight: list[tuple[list[Any], dict[TopicPartition, int]]] = []
    seen = 0
    started: float | None = None
    try:
        while seen < expected:
            polled = consumer.poll(timeout_ms=100, max_records=ws.max_batch_size)
            if polled and started is None:
                started = time.perf_counter()
            futures: list[Any] = []
            offsets: dict[TopicPartition, int] = {}
            for tp, records in polled.items():
                futures.extend(producer.send(sink, key=r.key, value=r.value) for r in records)
                offsets[tp] = records[-1].offset + 1
                seen += len(records)
            if futures:
                in_flight.append((futures, offsets))
            while in_flight and (len(in_flight) > 1 or seen >= expected):
                head, head_offsets = in_flight.pop(0)
                for f in head:
                    f.get(timeout=60)
                consumer.commit(
                    {tp: OffsetAndMetadata(o, "", -1) for tp, o in head_offsets.items()}
                )
        assert started is not None
        return seen / (time.perf_counter() - started)
    finally:
        producer.close()
        consumer.close()


def offline_scoring(pipeline: Any, values: list[bytes], threads: int) -> float:
    """Events per second of validation + rows + one predict_proba per 1,000 values, with
    as many numpy/OpenMP threads as the worker uses."""
    spec = get_domain("transactions")
    with threadpool_limits(threads):
        started = time.perf_counter()
        for i in range(0, len(values), BATCH):
            validated = spec.validate_batch(values[i : i + BATCH])
            pipeline.predict_proba(spec.to_rows(validated.events))[:, 1]
        return len(values) / (time.perf_counter() - started)


def run_worker(settings: Settings, expected: int, profile: Path | None) -> tuple[float, Any]:
    """Messages per second of the real worker over ``expected`` messages."""
    worker = Worker(settings, "transactions", limits=RunLimits(max_messages=expected))
    if profile is None:
        summary = worker.run()
    else:
        profiler = Profiler(interval=0.0005)
        with profiler:
            summary = worker.run()
        profile.write_text(profiler.output_text(unicode=True, show_all=False))
        log.info("profile written to %s", profile)
    # First record to last commit, as the pass-through is measured.
    busy_s = summary.drained_s - summary.first_record_s
    return summary.consumed / busy_s, summary


def fit_champion(rows: list[list[str]]) -> tuple[Any, float]:
    """The fraud pipeline fitted on the labelled rows, and its threshold."""
    spec = get_domain("transactions")
    x, y = labelled(rows)
    started = time.perf_counter()
    pipeline = spec.build_pipeline(seed=7).fit(x, y)
    threshold = spec.choose_threshold(y, pipeline.predict_proba(x)[:, 1])
    log.info("fitted on %d rows in %.1f s", len(y), time.perf_counter() - started)
    return pipeline, float(threshold)


def register_champion(
    settings: Settings, pipeline: Any, threshold: float, rows: list[list[str]]
) -> None:
    """Register the fitted pipeline and make it the champion."""
    golden = [json.loads(event_bytes(i, rows[i])) for i in range(20)]
    with Registry.from_settings(settings) as registry:
        version = registry.register(
            "transactions", pipeline, domain="transactions", threshold=threshold,
            input_schema_version=1, golden_events=golden,
            params={"seed": 7}, metrics={}, champion_metrics=None,
            lineage={"source": "bench"}, created_by="bench_worker",
        )  # fmt: skip
        registry.promote("transactions", version.version, expected_current=None, reason="bench")


@dataclass(frozen=True)
class Round:
    """The three figures of one round, measured one after the other."""

    pass_through: float
    scoring: float
    worker: float

    @property
    def bound(self) -> float:
        """1 / (1/pass-through + 1/scoring)."""
        return 1 / (1 / self.pass_through + 1 / self.scoring)

    @property
    def ratio(self) -> float:
        """The worker against the bound."""
        return self.worker / self.bound


def one_round(
    settings: Settings, fitted: tuple[Any, float], rows: list[list[str]],
    values: list[bytes], profile: Path | None,
) -> Round:  # fmt: skip
    """Fresh topics, the champion registered, the events published, the three runs."""
    create_domain_topics(settings, "transactions")
    topics = for_settings(settings, "transactions")
    sink = settings.topics.prefix + "passthrough.out"
    with admin_client(settings.kafka) as admin:
        partitions = settings.topics.partitions
        admin.create_topics({sink: {"num_partitions": partitions, "replication_factor": 1}})
    register_champion(settings, *fitted, rows)
    publish(settings, topics.events, values)
    log.info("published %d events to %s", len(values), topics.events)
    pt = pass_through(settings, topics.events, sink, len(values))
    log.info("pass-through: %.0f msg/s", pt)
    scoring = offline_scoring(fitted[0], values, settings.worker.scoring_threads)
    log.info("offline scoring: %.0f events/s", scoring)
    rate, summary = run_worker(settings, len(values), profile)
    log.info("worker: %.0f msg/s (%d predicted)", rate, summary.predicted)
    assert summary.predicted == len(values), summary
    return Round(pt, scoring, rate)


def crc32c_in_use() -> bool:
    """Whether kafka-python checksums record batches with the C ``crc32c`` package."""
    return bool(record_util._crc32c is crc32c.crc32c)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--train-rows", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=1, help="repeat the three runs")
    parser.add_argument("--profile", type=Path, default=None,
                        help="pyinstrument text report of the last round's worker")  # fmt: skip
    parser.add_argument("--bootstrap", default=None, help="use this broker instead")
    parser.add_argument("--redis-url", default=None, help="with --bootstrap: this Redis")
    parser.add_argument("--data-dir", type=Path, default=Settings().data_dir)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("kafka").setLevel(logging.ERROR)

    rows = creditcard_rows(args.data_dir, max(args.events, args.train_rows))
    values = [event_bytes(i, rows[i % len(rows)]) for i in range(args.events)]
    log.info("%d events, %.0f bytes on average; crc32c in use: %s",
             len(values), sum(map(len, values)) / len(values), crc32c_in_use())  # fmt: skip
    fitted = fit_champion(rows[: args.train_rows])
    rounds = []
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        home = Path(tmp)
        with services(args, home) as (bootstrap, redis_url):
            for n in range(args.rounds):
                settings = bench_settings(bootstrap, redis_url, home, args.partitions)
                profile = args.profile if n == args.rounds - 1 else None
                rounds.append(one_round(settings, fitted, rows, values, profile))
    print(f"events: {len(values)} of {sum(map(len, values)) / len(values):.0f} bytes, "
          f"{args.partitions} partitions; crc32c (C) in use: {crc32c_in_use()}")  # fmt: skip
    print("round  pass-through  scoring  bound  worker  worker/bound")
    for n, r in enumerate(rounds, start=1):
        print(f"{n:5d}  {r.pass_through:12.0f}  {r.scoring:7.0f}  {r.bound:5.0f}  "
              f"{r.worker:6.0f}  {r.ratio:12.2f}")  # fmt: skip
    ratios = [r.ratio for r in rounds]
    print(f"worker/bound: median {statistics.median(ratios):.2f}, "
          f"min {min(ratios):.2f}, max {max(ratios):.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
