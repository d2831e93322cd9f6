"""The latency floor of the broker and the client: a kafka-python producer at a steady
rate and a consumer in a group (``read_committed``), no worker between them.

    uv run --frozen inferloop services up
    uv run --frozen python -m bench.raw_latency [--bootstrap 127.0.0.1:9092] [--rate 500]
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid

import numpy as np
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

SECONDS = 15


def measure(bootstrap: str, rate: float) -> dict[str, float]:
    """p50 / p95 / p99 in ms of (arrival - record timestamp), the first second left out."""
    count = int(rate * SECONDS)
    topic = f"raw-latency-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 4, 1)])
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=topic,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_poll_records=1000,
    )
    while not consumer.assignment():
        consumer.poll(timeout_ms=100)
    delays: list[float] = []

    def consume() -> None:
        deadline = time.monotonic() + SECONDS * 3 + 30
        while len(delays) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=100).values():
                now_ms = time.time() * 1000
                delays.extend(now_ms - r.timestamp for r in records)

    reader = threading.Thread(target=consume)
    reader.start()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
    value = b"x" * 800
    start = time.perf_counter()
    for i in range(count):
        producer.send(topic, key=str(i).encode(), value=value)
        pause = start + (i + 1) / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    producer.flush()
    reader.join()
    producer.close()
    consumer.close()
    admin.delete_topics([topic])
    admin.close()
    kept = np.asarray(delays[int(rate) :])
    return {f"p{q}": float(np.percentile(kept, q)) for q in (50, 95, 99)}


def main() -> None:
    """Print the floor at the chosen rate."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--rate", type=float, default=500.0)
    args = parser.parse_args()
    figures = measure(args.bootstrap, args.rate)
    print(f"raw {args.rate:.0f}/s: " + ", ".join(f"{k} {v:.1f} ms" for k, v in figures.items()))


if __name__ == "__main__":
    main()
