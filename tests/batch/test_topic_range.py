"""``inferloop score --topic-range``: the events topic between offsets or times, to a
named topic or a file, without a consumer group."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import TopicPartition

from inferloop.batch.errors import TopicRangeError
from inferloop.batch.topic_range import Bound, parse_bound
from inferloop.connections import make_consumer
from inferloop.settings import Settings
from inferloop.topics import DomainTopics
from tests.batch.helpers import json_lines, ok, score
from tests.helpers import read_topic
from tests.worker.conftest import Champion
from tests.worker.factories import Fitted, publish_events


def _end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = make_consumer(settings.kafka)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def test_a_range_of_offsets_to_a_named_topic_then_a_time_to_a_file(
    *,
    wsettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
    topic_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    version = champion(model_v1).version
    publish_events(wsettings, topics.events, range(300))
    ends = _end_offsets(wsettings, topics.events)
    time.sleep(0.05)
    between = datetime.now(UTC).isoformat()
    time.sleep(0.05)
    publish_events(wsettings, topics.events, range(300, 420))
    target = topic_factory("rescored")
    upto = ",".join(f"{p}={o}" for p, o in ends.items())

    summary = json.loads(ok(score(wsettings, "transactions", "--topic-range", "--to", upto,
                                  "--to-topic", target, "--json")))  # fmt: skip

    records = read_topic(wsettings, target)
    assert sorted(r.key for r in records) == sorted(f"tx-{i}".encode() for i in range(300))
    assert all(json.loads(r.value)["model"]["version"] == version for r in records)
    assert summary["predicted"] == 300
    assert read_topic(wsettings, topics.predictions) == []

    out = tmp_path / "late.jsonl"
    ok(score(wsettings, "transactions", "--topic-range", "--from", between,
             "--output", str(out)))  # fmt: skip
    assert sorted(p["event_id"] for p in json_lines(out)) == sorted(
        f"tx-{i}" for i in range(300, 420)
    )


def test_a_bad_record_in_a_range_is_rejected_with_its_offset(
    wsettings: Settings, topics: DomainTopics, champion: Champion, model_v1: Fitted, tmp_path: Path
) -> None:
    from tests.worker.factories import publish

    champion(model_v1)
    publish(wsettings, topics.events, [b"[1, 2]"], [b"odd"])
    out, rejects = tmp_path / "out.jsonl", tmp_path / "rejects.jsonl"

    ok(score(wsettings, "transactions", "--topic-range", "--output", str(out),
             "--rejects", str(rejects)))  # fmt: skip

    (reject,) = json_lines(rejects)
    assert reject["reason"] == "not_object"
    assert reject["topic"] == topics.events
    assert reject["offset"] == 0
    assert reject["value"] == "[1, 2]"
    assert json_lines(out) == []


def test_bounds_as_typed() -> None:
    assert parse_bound("earliest") == Bound(edge="earliest")
    assert parse_bound("end") == Bound(edge="end")
    assert parse_bound("0=12, 3=40") == Bound(offsets={0: 12, 3: 40})
    assert parse_bound("1700000000000") == Bound(time_ms=1_700_000_000_000)
    assert parse_bound("2024-03-01T10:00:00+01:00") == Bound(time_ms=1_709_283_600_000)
    for bad in ("2024-03-01T10:00:00", "0=x", "yesterday", "1=-3"):
        with pytest.raises(TopicRangeError):
            parse_bound(bad)
