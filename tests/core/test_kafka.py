"""The real broker: topics, a consumer group with committed offsets, resume after restart."""

from __future__ import annotations

from collections.abc import Callable

from kafka import OffsetAndMetadata
from kafka.admin import ConfigResource

from inferloop.connections import admin_client, make_consumer, make_producer
from inferloop.settings import Settings
from inferloop.topics import create_domain_topics, for_settings


def _produce(settings: Settings, topic: str, start: int, count: int) -> None:
    producer = make_producer(settings.kafka, acks="all")
    try:
        for i in range(start, start + count):
            producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
        producer.flush(timeout=30)
    finally:
        producer.close()


def _consume_and_commit(settings: Settings, topic: str, group: str, want: int) -> list[str]:
    consumer = make_consumer(
        settings.kafka, topic, group_id=group, auto_offset_reset="earliest", session_timeout_ms=6000
    )
    seen: list[str] = []
    try:
        while len(seen) < want:
            batches = consumer.poll(timeout_ms=1000, max_records=want - len(seen))
            offsets = {}
            for tp, records in batches.items():
                seen.extend(r.value.decode() for r in records)
                offsets[tp] = records[-1].offset + 1
            if offsets:
                consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
    finally:
        consumer.close()
    return seen


def test_group_commits_offsets_and_a_restarted_consumer_resumes(
    settings: Settings, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("events", partitions=3)
    group = settings.topics.prefix + "group"
    _produce(settings, topic, 0, 300)

    first = _consume_and_commit(settings, topic, group, 300)
    _produce(settings, topic, 300, 200)
    second = _consume_and_commit(settings, topic, group, 200)

    assert sorted(first) == sorted(f"v{i}" for i in range(300))
    assert sorted(second) == sorted(f"v{i}" for i in range(300, 500))
    with admin_client(settings.kafka) as admin:
        committed = admin.list_group_offsets({group: None})
    total = sum(o.offset for o in committed[group].values())
    assert total == 500


def test_topics_create_is_idempotent_and_keeps_labels_forever(settings: Settings) -> None:
    first = create_domain_topics(settings, "transactions")
    second = create_domain_topics(settings, "transactions")
    names = for_settings(settings, "transactions")

    assert set(first.created) == set(names.all())
    assert first.existing == ()
    assert second.created == ()
    assert set(second.existing) == set(names.all())

    consumer = make_consumer(settings.kafka)
    try:
        for topic in names.all():
            assert consumer.partitions_for_topic(topic) == {0, 1, 2, 3}
    finally:
        consumer.close()
    with admin_client(settings.kafka) as admin:
        configs = admin.describe_configs(
            [ConfigResource("topic", names.labels), ConfigResource("topic", names.events)]
        )["topic"]
    assert configs[names.labels]["retention.ms"]["value"] == "-1"
    assert configs[names.labels]["cleanup.policy"]["value"] == "delete"
    assert "retention.ms" not in configs[names.events]


def test_a_topic_name_typo_creates_no_topic(settings: Settings) -> None:
    missing = settings.topics.prefix + "typo"
    consumer = make_consumer(settings.kafka)
    try:
        assert not consumer.partitions_for_topic(missing)
    finally:
        consumer.close()
    with admin_client(settings.kafka) as admin:
        assert missing not in admin.list_topics()
