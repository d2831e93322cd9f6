"""What a console view costs on a large dead-letter topic, and the monitor history's size
(not run by CI).

``python -m bench.console_views [--letters 20000] [--publish]`` starts its own Kafka and
Redis, writes ``--letters`` dead letters over the emails DLQ's 4 partitions, and times
each dead-letter view as it read before (the whole topic: ``ops.dlq.show`` for the list
and the overview's counts, ``iter_letters`` to find one letter) and as it reads now
(``page``, ``count_reasons``, ``read_letter``): wall time (median of 3) and records read.
Then it fills one version's history list to its bound (``HISTORY_POINTS`` evaluations of
two windows) and reports its ``MEMORY USAGE``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from bench.env import environment
from bench.machine import machine_facts
from bench.summary import DOCS_RESULTS, source_facts, summary
from inferloop.connections import make_producer
from inferloop.keys import Keys
from inferloop.monitor.state import StateStore
from inferloop.ops import dlq
from inferloop.ops.monitor_history import HISTORY_POINTS
from inferloop.settings import KafkaSettings, RedisSettings, Settings, TopicSettings
from inferloop.topics import create_domain_topics, for_settings

REASONS = (b"invalid_json", b"schema", b"too_large")


def _write_letters(settings: Settings, n: int) -> None:
    topic = for_settings(settings, "emails").dlq
    producer = make_producer(settings.kafka, acks="all")
    body = b"x" * 200
    for i in range(n):
        headers = [("dlq.reason", REASONS[i % 3]), ("dlq.time", str(i).zfill(8).encode())]
        producer.send(topic, key=f"k{i}".encode(), value=body, headers=headers, partition=i % 4)
    producer.flush(timeout=120)
    producer.close()


def _timed(run: Callable[[], int]) -> dict[str, float]:
    seconds, read = [], 0
    for _ in range(3):
        started = time.perf_counter()
        read = run()
        seconds.append(time.perf_counter() - started)
    return {"seconds": statistics.median(seconds), "records_read": read}


def _views(settings: Settings, n: int) -> dict[str, dict[str, float]]:
    last = f"{(n - 1) % 4}:{(n - 1) // 4}"

    def old_letter() -> int:
        count = 0
        for letter in dlq.iter_letters(settings, "emails"):
            count += 1
            if letter.coordinates == last:
                break
        return count

    return {
        "list, before (show, limit 200)": _timed(
            lambda: dlq.show(settings, "emails", limit=200).total
        ),
        "counts, before (show, limit 0)": _timed(
            lambda: dlq.show(settings, "emails", limit=0).total
        ),
        "one letter, before (iter_letters to it)": _timed(old_letter),
        "list, now (page of 50)": _timed(lambda: dlq.page(settings, "emails", per_page=50).read),
        "list of one reason, now": _timed(
            lambda: dlq.page(settings, "emails", per_page=50, reason="schema").read
        ),
        "counts, now (newest 500 per partition)": _timed(
            lambda: dlq.count_reasons(settings, "emails", last=500).scanned
        ),
        "one letter, now (read_letter)": _timed(
            lambda: len([dlq.read_letter(settings, "emails", (n - 1) % 4, (n - 1) // 4)])
        ),
    }


def _status(at: datetime) -> dict[str, Any]:
    cell = {"value": 0.912345678, "low": 0.871234567, "high": 0.951234567}
    figures = ("precision", "recall", "f1", "target_value", "auprc")
    window = {"n": 1234, "positives": 50, "target": "ham_flagged", **dict.fromkeys(figures, cell)}
    role = {"version": 7, "windows": {"positives": window, "time": window}}
    return {"evaluated_at": at.isoformat(), "roles": {"champion": role}}


def _history_size(client: redis.Redis, keys: Keys) -> dict[str, float]:
    store = StateStore(client, keys, "emails", 30.0, history_every_s=0.0)
    start = datetime.now(UTC) - timedelta(hours=24)
    for i in range(HISTORY_POINTS + 10):
        store.put_status(_status(start + timedelta(seconds=30 * i)))
    key = keys.monitor_history("emails", 7)
    size = int(client.memory_usage(key) or 0)
    return {
        "points": int(client.llen(key)),
        "bytes": size,
        "bytes_per_point": size / HISTORY_POINTS,
    }


def _markdown(results: dict[str, Any]) -> str:
    rows = "\n".join(
        f"| {name} | {v['seconds'] * 1000:.0f} | {int(v['records_read'])} |"
        for name, v in results["views"].items()
    )
    h = results["history"]
    return (
        f"# Console views: dead-letter pages and the monitor's history\n\n"
        f"Command: `{results['command']}` (commit {results['source']['commit']}, dirty tree: "
        f"{results['source']['dirty']}), {results['machine']['time']}, "
        f"{results['machine']['cores']} cores, load average {results['load_start']} at the "
        f"start and {results['load_end']} at the end (other work shared the machine).\n\n"
        f"## Dead-letter views on {results['letters']} letters over 4 partitions\n\n"
        f"Median of 3 per view; records read is what one view reads.\n\n"
        f"| view | ms | records read |\n|---|---|---|\n{rows}\n\n"
        f"## The history list of one version at its bound\n\n"
        f"| points | bytes (MEMORY USAGE) | bytes per point |\n|---|---|---|\n"
        f"| {h['points']} | {h['bytes']} | {h['bytes_per_point']:.0f} |\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--letters", type=int, default=20_000)
    parser.add_argument("--publish", action="store_true", help="write docs/results/<run id>/")
    args = parser.parse_args()
    run = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-console-views"
    load_start = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as home, environment(Path(home), Path(home)) as env:
        settings = Settings(
            kafka=KafkaSettings(bootstrap_servers=env.bootstrap),
            redis=RedisSettings(url=env.redis_url, key_prefix="bench"),
            topics=TopicSettings(prefix="bench-", partitions=4),
        )
        create_domain_topics(settings, "emails")
        _write_letters(settings, args.letters)
        views = _views(settings, args.letters)
        client = redis.Redis.from_url(env.redis_url)
        history = _history_size(client, Keys("bench"))
        client.close()
    results = {
        "run": run, "command": f"python -m bench.console_views --letters {args.letters}",
        "source": source_facts(), "machine": machine_facts({}), "letters": args.letters,
        "load_start": load_start, "load_end": [round(x, 2) for x in os.getloadavg()],
        "views": views, "history": history,
    }  # fmt: skip
    text = _markdown(results)
    print(text)
    if args.publish:
        out = DOCS_RESULTS / run
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.md").write_text(text)
        (out / "results.json").write_text(json.dumps(summary(results, text), indent=2) + "\n")
        print(f"published to {out}")


if __name__ == "__main__":
    main()
