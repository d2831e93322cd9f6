"""The worker against the real Kafka and Redis: ids in, the same ids out, bad input aside."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable

import pytest
from kafka.admin import ConfigResource
from kafka.errors import MessageSizeTooLargeError
from kafka.partitioner.default import murmur2

from inferloop.connections import admin_client, make_producer
from inferloop.ops.lag import group_lag
from inferloop.settings import Settings
from inferloop.topics import DomainTopics, create_domain_topics, for_settings
from inferloop.worker.deadletter import (
    H_DETAIL,
    H_MODEL,
    H_NULL_VALUE,
    H_OFFSET,
    H_ORIGINAL_LENGTH,
    H_ORIGINAL_REASON,
    H_ORIGINAL_SHA256,
    H_REASON,
    H_TOPIC,
    header,
)
from inferloop.worker.loop import RunLimits
from tests.helpers import read_topic
from tests.worker.conftest import Champion, WorkerThread, wait_for, with_worker
from tests.worker.factories import (
    POISON_AMOUNT,
    Fitted,
    duplicates,
    poisoned,
    predictions,
    publish,
    publish_events,
    tx_bytes,
    tx_event,
)


@pytest.mark.shortcuts_off_too
def test_ten_thousand_events_in_the_same_ten_thousand_ids_out_with_the_version(
    *,
    wsettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
    worker_thread: Callable[..., WorkerThread],
) -> None:
    version = champion(model_v1)
    ids = range(10_000)
    publish_events(wsettings, topics.events, ids)

    summary = worker_thread(wsettings, limits=RunLimits(max_messages=10_000)).join(120)

    out = predictions(wsettings, topics.predictions, expect=10_000)
    assert summary.consumed == 10_000
    assert summary.predicted == 10_000
    assert sorted(p.event_id for p in out) == sorted(f"tx-{i}" for i in ids)
    assert duplicates(p.event_id for p in out) == {}
    assert {(p.model.name, p.model.version) for p in out} == {("transactions", version.version)}
    assert {p.domain for p in out} == {"transactions"}
    assert {p.label for p in out} <= {"legit", "fraud"}
    assert group_lag(wsettings, "transactions").total == 0
    # Partitioned by key exactly as Kafka's default partitioner would.
    records = read_topic(wsettings, topics.predictions)
    assert all(r.partition == (murmur2(r.key) & 0x7FFFFFFF) % 4 for r in records)


def hostile_messages() -> list[tuple[str, bytes | None, str]]:
    """(key, value, the reason the dead letter must give)."""
    deep = b'{"a": ' * 5000 + b"1" + b"}" * 5000
    naive = tx_event(1, event_time="2024-03-01T10:00:00")
    missing = {k: v for k, v in tx_event(2).items() if k != "v3"}
    return [
        ("bad-utf8", b'\xff\xfe{"id": 1}', "not_utf8"),
        ("bad-json", b"{not json at all", "not_json"),
        ("bad-deep", deep, "too_deep"),
        ("bad-array", b"[1, 2, 3]", "not_object"),
        ("bad-missing", json.dumps(missing).encode(), "missing_field"),
        ("bad-type", json.dumps(tx_event(3, amount="12.50")).encode(), "wrong_type"),
        ("bad-nan", json.dumps(tx_event(4, v7=float("nan"))).encode(), "not_finite"),
        ("bad-naive", json.dumps(naive).encode(), "naive_time"),
        (
            "bad-surrogate",
            json.dumps(tx_event(5)).replace('"tx-5"', '"tx-\\ud800"').encode(),
            "lone_surrogate",
        ),
        ("bad-version", json.dumps(tx_event(6, schema_version=99)).encode(), "unsupported_version"),
        ("bad-tombstone", None, "null_value"),
        ("bad-huge", b'{"id": "' + b"x" * 1_500_000 + b'"}', "too_large"),
    ]


def test_hostile_messages_are_dead_lettered_with_their_reason_and_the_worker_goes_on(
    *,
    wsettings: Settings,
    topic_factory: Callable[..., str],
    champion: Champion,
    model_v1: Fitted,
    worker_thread: Callable[..., WorkerThread],
) -> None:
    # The events topic takes messages larger than the worker's producer may send.
    topic_factory("transactions", partitions=4, config={"max.message.bytes": "4194304"})
    create_domain_topics(wsettings, "transactions")
    topics = for_settings(wsettings, "transactions")
    champion(model_v1)
    hostile = hostile_messages()
    publish_events(wsettings, topics.events, range(100))
    publish(
        wsettings, topics.events, [v for _, v, _ in hostile], [k.encode() for k, _, _ in hostile]
    )
    publish_events(wsettings, topics.events, range(100, 200))
    running = worker_thread(wsettings)

    letters = read_topic(wsettings, topics.dlq, expect=len(hostile), timeout_s=60)
    first = predictions(wsettings, topics.predictions, expect=200)
    publish_events(wsettings, topics.events, range(200, 300))
    later = predictions(wsettings, topics.predictions, expect=300)
    summary = running.stop()

    by_key = {r.key.decode(): r for r in letters}
    assert sorted(by_key) == sorted(k for k, _, _ in hostile)
    for key, value, reason in hostile:
        letter = by_key[key]
        assert header(letter.headers, H_REASON) == reason, key
        assert header(letter.headers, H_TOPIC) == topics.events
        assert header(letter.headers, H_OFFSET) is not None
        if reason == "too_large":
            assert value is not None
            assert letter.value == value[: 64 * 1024]
            assert header(letter.headers, H_ORIGINAL_LENGTH) == str(len(value))
            assert header(letter.headers, H_ORIGINAL_SHA256) == hashlib.sha256(value).hexdigest()
            assert header(letter.headers, H_ORIGINAL_REASON) == "oversize_event"
        elif value is None:
            assert header(letter.headers, H_NULL_VALUE) == "1"
        else:
            assert letter.value == value
    assert len(first) == 200
    assert sorted(p.event_id for p in later) == sorted(f"tx-{i}" for i in range(300))
    assert summary.dead_lettered == len(hostile)


def test_events_published_before_any_worker_or_champion_are_all_scored(
    *,
    wsettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
    worker_thread: Callable[..., WorkerThread],
) -> None:
    publish_events(wsettings, topics.events, range(1000))
    running = worker_thread(wsettings)
    wait_for(lambda: running.worker.health.state == "waiting_for_champion", 30, "waiting")
    time.sleep(1.0)  # it must keep waiting, not consume
    assert running.worker.summary.consumed == 0
    assert all(p.committed is None for p in group_lag(wsettings, "transactions").partitions)
    assert not running.worker.health.ready()

    version = champion(model_v1)
    out = predictions(wsettings, topics.predictions, expect=1000)
    running.stop()

    assert sorted(p.event_id for p in out) == sorted(f"tx-{i}" for i in range(1000))
    assert {p.model.version for p in out} == {version.version}


def test_an_event_that_makes_the_model_raise_is_dead_lettered_and_its_batch_predicted(
    *,
    wsettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
    worker_thread: Callable[..., WorkerThread],
) -> None:
    version = champion(poisoned(model_v1))
    publish_events(wsettings, topics.events, range(150))
    publish(wsettings, topics.events, [tx_bytes(150, amount=POISON_AMOUNT)], [b"tx-150"])
    publish_events(wsettings, topics.events, range(151, 300))

    summary = worker_thread(wsettings, limits=RunLimits(max_messages=300)).join(60)

    letters = read_topic(wsettings, topics.dlq, expect=1)
    out = predictions(wsettings, topics.predictions, expect=299)
    assert [r.key for r in letters] == [b"tx-150"]
    assert header(letters[0].headers, H_REASON) == "scoring_error"
    assert "breaks this model" in (header(letters[0].headers, H_DETAIL) or "")
    assert header(letters[0].headers, H_MODEL) == f"transactions@{version.version}"
    assert sorted(p.event_id for p in out) == sorted(f"tx-{i}" for i in range(300) if i != 150)
    assert summary.predicted == 299
    assert summary.dead_lettered == 1


def set_topic_config(settings: Settings, topic: str, configs: dict[str, str]) -> None:
    with admin_client(settings.kafka) as admin:
        admin.alter_configs([ConfigResource("topic", topic, configs=configs)])


PROBE = frozenset({b"probe"})


def refuses(settings: Settings, topic: str, size: int) -> bool:
    """Whether the broker refuses a record of ``size`` bytes on ``topic`` now."""
    producer = make_producer(settings.kafka, acks="all", enable_idempotence=False, retries=0)
    try:
        producer.send(topic, key=next(iter(PROBE)), value=b"x" * size).get(timeout=10)
    except MessageSizeTooLargeError:
        return True
    finally:
        producer.close()
    return False


@pytest.mark.shortcuts_off_too
def test_sends_the_broker_refuses_are_read_again_and_nothing_is_skipped(
    *,
    wsettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
    worker_thread: Callable[..., WorkerThread],
) -> None:
    champion(model_v1)
    # Quick timeouts: a send the producer never answers counts as failed within seconds.
    settings = with_worker(
        wsettings.model_copy(
            update={"kafka": wsettings.kafka.model_copy(update={"request_timeout_ms": 5000})}
        ),
        max_poll_interval_ms=10_000,
    )
    # Every prediction (about 300 bytes) is now too large for its topic.
    set_topic_config(wsettings, topics.predictions, {"max.message.bytes": "120"})
    wait_for(lambda: refuses(wsettings, topics.predictions, 300), 30, "the new limit")
    publish_events(wsettings, topics.events, range(100))
    running = worker_thread(settings)
    errors = "inferloop_worker_errors_total"
    labels = {"domain": "transactions", "kind": "send"}
    wait_for(lambda: (running.worker.metrics.registry.get_sample_value(errors, labels) or 0) >= 2,
             60, "refused sends")  # fmt: skip
    assert all(p.committed is None for p in group_lag(wsettings, "transactions").partitions)

    set_topic_config(wsettings, topics.predictions, {"max.message.bytes": "1048588"})
    wanted = {f"tx-{i}" for i in range(100)}

    def all_predicted() -> bool:
        out = predictions(wsettings, topics.predictions, ignore_keys=PROBE)
        return {p.event_id for p in out} == wanted

    wait_for(all_predicted, 60, "every event predicted")
    running.stop()
    out = predictions(wsettings, topics.predictions, ignore_keys=PROBE)

    assert {p.event_id for p in out} == wanted
    assert read_topic(wsettings, topics.dlq) == []
    assert group_lag(wsettings, "transactions").total == 0
