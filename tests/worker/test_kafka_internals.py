"""The shortcuts into kafka-python's internals: their shapes hold on the pinned release,
each can be switched off, and one whose shape changed falls back to the public API with
one WARNING and a metric, never a crash (real clients, on the real broker)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from pydantic import ValidationError

from inferloop.connections import make_consumer, make_producer
from inferloop.kafka_internals import SHAPES, KafkaInternals
from inferloop.settings import KAFKA_SHORTCUTS, KafkaShortcut, Settings, WorkerSettings
from inferloop.worker.loop import Worker
from tests.worker.conftest import DOMAIN, with_worker

FALLBACKS = "inferloop_worker_kafka_shortcut_fallback_total"


@pytest.fixture
def clients(settings: Settings) -> Iterator[tuple[KafkaConsumer, KafkaProducer]]:
    consumer = make_consumer(settings.kafka, group_id="internals", auto_offset_reset="earliest")
    producer = make_producer(settings.kafka, acks="all")
    yield consumer, producer
    producer.close()
    consumer.close()


def fallbacks(internals: KafkaInternals, shortcut: str) -> float:
    return float(internals.fallbacks.labels(shortcut)._value.get())


def test_every_shape_holds_on_the_pinned_kafka_python(
    clients: tuple[KafkaConsumer, KafkaProducer],
) -> None:
    consumer, producer = clients
    for shortcut, check in SHAPES.items():
        client = producer if shortcut in ("batch_append", "force_close") else consumer
        assert check(client) is None, shortcut
    assert set(SHAPES) == set(KAFKA_SHORTCUTS)


def test_a_changed_shape_falls_back_to_send_with_one_warning_and_a_metric(
    settings: Settings,
    topic_factory: Callable[..., str],
    clients: tuple[KafkaConsumer, KafkaProducer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, producer = clients
    topic = topic_factory(partitions=2)
    internals = KafkaInternals()
    # As if a release reshaped the accumulator's append (send() still works with it).
    real = producer._accumulator

    def append(*args: object, **kwargs: object) -> object:
        return real.append(*args, **kwargs)

    producer._accumulator = SimpleNamespace(append=append)
    try:
        with caplog.at_level(logging.WARNING, logger="inferloop.kafka_internals"):
            first = internals.append_records(producer, topic, [b"a", b"b"], [b"1", b"2"], [0, 1])
            second = internals.append_records(producer, topic, [b"c"], [b"3"], [1])
    finally:
        producer._accumulator = real
    metadata = [f.get(timeout=10) for f in first + second]
    assert [(m.partition, m.offset) for m in metadata] == [(0, 0), (1, 0), (1, 1)]
    warnings = [r for r in caplog.records if r.name == "inferloop.kafka_internals"]
    assert len(warnings) == 1
    assert "batch_append" in warnings[0].getMessage()
    assert fallbacks(internals, "batch_append") == 1


def test_a_changed_consumer_shape_leaves_its_polls_to_kafka_python(
    clients: tuple[KafkaConsumer, KafkaProducer],
) -> None:
    consumer, _ = clients
    internals = KafkaInternals()
    asked = consumer._coordinator.ensure_coordinator_ready
    real = consumer._fetcher._nodes_with_pending_fetch_requests
    consumer._fetcher._nodes_with_pending_fetch_requests = list(real)
    try:
        internals.check_consumer(consumer)
    finally:
        consumer._fetcher._nodes_with_pending_fetch_requests = real
    assert consumer._coordinator.ensure_coordinator_ready != asked  # that shape held
    assert "send_fetches" not in vars(consumer._fetcher)  # that one did not
    assert fallbacks(internals, "fetches_in_flight") == 1
    assert fallbacks(internals, "coordinator_known") == 0


def test_switched_off_every_shortcut_takes_the_public_api(
    settings: Settings,
    topic_factory: Callable[..., str],
    clients: tuple[KafkaConsumer, KafkaProducer],
) -> None:
    consumer, producer = clients
    topic = topic_factory(partitions=2)
    internals = KafkaInternals(enabled=())
    asked = consumer._coordinator.ensure_coordinator_ready
    internals.check_consumer(consumer)
    internals.check_producer(producer)
    sent: list[tuple[object, ...]] = []
    send = producer.send

    def counting_send(*args: object, **kwargs: object) -> object:
        sent.append((args, kwargs))
        return send(*args, **kwargs)

    producer.send = counting_send
    futures = internals.append_records(producer, topic, [b"a", b"b"], [b"1", b"2"], [1, 0])
    assert [f.get(timeout=10).partition for f in futures] == [1, 0]
    assert len(sent) == 2
    assert consumer._coordinator.ensure_coordinator_ready == asked
    assert "send_fetches" not in vars(consumer._fetcher)
    consumer.assign([TopicPartition(topic, 0)])
    assert internals.fetched(consumer, 10, 100) == {}
    assert all(fallbacks(internals, s) == 0 for s in KAFKA_SHORTCUTS)


def test_the_setting_takes_names_from_the_environment() -> None:
    assert WorkerSettings().kafka_shortcuts == KAFKA_SHORTCUTS
    assert WorkerSettings.model_validate({"kafka_shortcuts": "none"}).kafka_shortcuts == ()
    assert WorkerSettings.model_validate({"kafka_shortcuts": ""}).kafka_shortcuts == ()
    chosen = WorkerSettings.model_validate({"kafka_shortcuts": "top_up, batch_append"})
    assert chosen.kafka_shortcuts == ("top_up", "batch_append")
    with pytest.raises(ValidationError):
        WorkerSettings.model_validate({"kafka_shortcuts": "top_up,warp_drive"})
    env = Settings(worker=chosen).to_env()["INFERLOOP_WORKER__KAFKA_SHORTCUTS"]
    assert WorkerSettings.model_validate({"kafka_shortcuts": env}) == chosen


@pytest.mark.parametrize("shortcuts", [KAFKA_SHORTCUTS, ("top_up", "batch_append")])
def test_the_worker_s_clients_take_the_shortcuts_its_settings_name(
    wsettings: Settings, shortcuts: tuple[KafkaShortcut, ...]
) -> None:
    worker = Worker(with_worker(wsettings, kafka_shortcuts=shortcuts), DOMAIN)
    consumer = worker._make_consumer()
    try:
        handoffs = {
            "coordinator_known": "ensure_coordinator_ready" in vars(consumer._coordinator),
            "fetches_in_flight": "send_fetches" in vars(consumer._fetcher),
        }
    finally:
        consumer.close()
    assert handoffs == {name: name in shortcuts for name in handoffs}
    assert worker._internals.enabled == set(shortcuts)
