"""The paced producer and its kafka-python sender against the real broker."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from bench.stream import KafkaPythonSender, PacedProducer
from inferloop.settings import Settings


def _sender(
    settings: Settings, topic: str, acked: list[int], failed: list[str]
) -> KafkaPythonSender:
    return KafkaPythonSender(
        settings.kafka,
        topic,
        linger_ms=5,
        delivery_timeout_ms=10_000,
        acked=acked.append,
        failed=lambda event_id, reason: failed.append(event_id),
    )


def test_a_connected_sender_sends_at_once_and_its_records_are_acknowledged(
    settings: Settings, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=2)
    acked: list[int] = []
    failed: list[str] = []
    sender = _sender(settings, topic, acked, failed)
    try:
        sender.connect(timeout_s=30)
        before = time.time() * 1000
        sender.send("e-1", b'{"id": "e-1"}')
        sender.send("e-2", b'{"id": "e-2"}')
        sender.flush(timeout_s=10)
    finally:
        sender.close()

    assert failed == []
    assert len(acked) == 2
    # The acknowledgements carry the records' Kafka timestamps, set when they were sent.
    assert all(before - 1 <= stamp <= time.time() * 1000 for stamp in acked)


def test_a_topic_that_does_not_exist_is_named_when_connecting_times_out(
    settings: Settings,
) -> None:
    topic = settings.topics.prefix + "never-created"
    sender = _sender(settings, topic, [], [])
    try:
        with pytest.raises(TimeoutError, match=f"no metadata for {topic} in 0.5 s"):
            sender.connect(timeout_s=0.5)
    finally:
        sender.close()


@pytest.mark.parametrize("ack_from_s", [0.0, 1.0])
def test_the_acknowledgement_times_leave_out_the_records_of_the_warm_up(
    settings: Settings, topic_factory: Callable[..., str], ack_from_s: float
) -> None:
    producer = PacedProducer(
        settings=settings,
        topic=topic_factory(partitions=1),
        templates=[b'{"id":"template","amount":1}'],
        tag="ack",
        count=40,
        rate_per_s=20,
        ack_from_s=ack_from_s,
    )
    result = producer.run()

    assert result["acked"] == 40
    if ack_from_s == 0:
        assert len(producer.ack_ms) == 40
    else:
        # Two seconds at 20 a second: about the second half is timed.
        assert 10 <= len(producer.ack_ms) <= 30
