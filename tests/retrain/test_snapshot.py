"""Reading the labels topic up to the end offsets taken at the start, through the cache."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from kafka import TopicPartition

from inferloop.connections import make_consumer
from inferloop.domains import get_domain
from inferloop.retrain.cache import SnapshotCache
from inferloop.retrain.errors import SnapshotError
from inferloop.retrain.snapshot import PartitionRange, Snapshot, SnapshotReader
from inferloop.settings import Settings
from tests.retrain.factories import emails, produce

SPEC = get_domain("emails")


def _end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = make_consumer(settings.kafka)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return {tp.partition: end for tp, end in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def _take(settings: Settings, topic: str, cache: SnapshotCache | None) -> Snapshot:
    with SnapshotReader(settings.kafka, SPEC, cache) as reader:
        ranges = reader.plan(topic)
        return reader.read(topic, ranges, taken_at_s=0.0)


def _ids(snapshot: Snapshot) -> list[str]:
    return sorted(bytes(i).decode() for i in snapshot.columns.ids)


def test_reads_every_partition_up_to_its_end_and_counts_rejects(
    settings: Settings, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("labels", partitions=4)
    produce(settings, topic, emails(120), raw=[b"not json", b'{"id": "x"}'])
    snapshot = _take(settings, topic, None)
    assert snapshot.end_offsets() == _end_offsets(settings, topic)
    assert all(r.start == 0 for r in snapshot.ranges)
    assert snapshot.records == 122
    assert len(snapshot.columns) == 120
    assert snapshot.rejects == {"not_json": 1, "missing_field": 1}
    # Each example keeps the partition and offset of the record it came from.
    pairs = set(
        zip(snapshot.columns.partition.tolist(), snapshot.columns.offset.tolist(), strict=True)
    )
    assert len(pairs) == 120


def test_a_second_read_takes_only_the_new_range_from_kafka(
    settings: Settings, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("labels", partitions=3)
    cache = SnapshotCache(settings.retrain.snapshot_dir, SPEC)
    produce(settings, topic, emails(90))
    first = _take(settings, topic, cache)
    produce(settings, topic, emails(10, start=90))
    second = _take(settings, topic, cache)
    uncached = _take(settings, topic, None)
    assert (first.records_from_kafka, first.examples_from_cache) == (90, 0)
    assert (second.records_from_kafka, second.examples_from_cache) == (10, 90)
    assert _ids(second) == _ids(uncached)
    order = np.lexsort((second.columns.offset, second.columns.partition))
    plain = np.lexsort((uncached.columns.offset, uncached.columns.partition))
    # The emails' text survives the cache exactly.
    assert second.columns.rows[order].tolist() == uncached.columns.rows[plain].tolist()


def test_a_cache_of_other_data_under_the_same_name_is_read_again(
    settings: Settings, topic_factory: Callable[..., str]
) -> None:
    cache = SnapshotCache(settings.retrain.snapshot_dir, SPEC)
    old = topic_factory("old", partitions=1)
    new = topic_factory("new", partitions=1)
    produce(settings, old, emails(30, prefix="old"))
    produce(settings, new, emails(40, prefix="new"))
    _take(settings, old, cache)
    # As if `new` were `old` deleted and made again: its cache describes other records.
    shutil.copytree(cache.base / old, cache.base / new)
    snapshot = _take(settings, new, cache)
    assert snapshot.examples_from_cache == 0
    assert _ids(snapshot) == sorted(f"new{i}" for i in range(40))


def test_a_damaged_cache_only_costs_a_read(
    settings: Settings, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("labels", partitions=1)
    cache = SnapshotCache(settings.retrain.snapshot_dir, SPEC)
    produce(settings, topic, emails(25))
    _take(settings, topic, cache)
    for segment in cache.segments(topic, 0):
        Path(segment.path).write_bytes(b"garbage")
    snapshot = _take(settings, topic, cache)
    assert (snapshot.records_from_kafka, len(snapshot.columns)) == (25, 25)


def test_a_window_starts_at_the_first_record_of_its_time(
    settings: Settings, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("labels", partitions=1)
    produce(settings, topic, emails(10), timestamp_ms=1_700_000_000_000)
    produce(settings, topic, emails(5, start=10), timestamp_ms=1_700_000_600_000)
    with SnapshotReader(settings.kafka, SPEC, None) as reader:
        ranges = reader.plan(topic, window_start_s=1_700_000_300.0)
        snapshot = reader.read(topic, ranges, taken_at_s=0.0)
    assert ranges == (PartitionRange(0, 10, 15),)
    assert _ids(snapshot) == sorted(f"m{i}" for i in range(10, 15))


def test_ranges_kafka_no_longer_has_are_an_error(
    settings: Settings, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("labels", partitions=1)
    produce(settings, topic, emails(5))
    with (
        SnapshotReader(settings.kafka, SPEC, None) as reader,
        pytest.raises(SnapshotError, match=r"not the range \[0, 9\)"),
    ):
        reader.read(topic, (PartitionRange(0, 0, 9),), 0.0, check_available=True)


def test_a_missing_topic_is_named(settings: Settings) -> None:
    with (
        SnapshotReader(settings.kafka, SPEC, None) as reader,
        pytest.raises(SnapshotError, match="does not exist"),
    ):
        reader.plan(settings.topics.prefix + "nope")
