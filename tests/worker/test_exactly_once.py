"""What exactly-once delivery decides when a transaction fails: abort, start over, or
stop. Fake clients (this is the decision logic; the crash and fault tests run the real
ones)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError, ProducerFencedError
from kafka.structs import ConsumerGroupMetadata

from inferloop.kafka_internals import KafkaInternals
from inferloop.topics import DomainTopics
from inferloop.worker.batch import Batch, batch_of
from inferloop.worker.delivery import ExactlyOnce
from inferloop.worker.errors import ProducerFencedOutError

TP = TopicPartition("events", 0)


@dataclass
class Record:
    offset: int
    key: bytes


@dataclass
class FakeFuture:
    error: BaseException | None = None

    is_done = True

    def failed(self) -> bool:
        return self.error is not None

    @property
    def exception(self) -> BaseException | None:
        return self.error


@dataclass
class FakeProducer:
    """Records what was asked of it; ``fail`` says which step raises what."""

    fail: dict[str, BaseException] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    sent: list[tuple[str, int | None]] = field(default_factory=list)
    closed: bool = False

    def _step(self, name: str) -> None:
        self.calls.append(name)
        if name in self.fail:
            raise self.fail[name]

    def begin_transaction(self) -> None:
        self._step("begin")

    def partitions_for(self, topic: str) -> set[int]:
        return {0}

    def send(self, topic: str, **kwargs: Any) -> FakeFuture:
        self.sent.append((topic, kwargs.get("partition")))
        return FakeFuture(self.fail.get("send"))

    def flush(self, timeout: float | None = None) -> None:
        self._step("flush")

    def send_offsets_to_transaction(self, offsets: Any, group: Any) -> None:
        self._step("offsets")

    def commit_transaction(self) -> None:
        self._step("commit")

    def abort_transaction(self) -> None:
        self._step("abort")

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


@dataclass
class FakeConsumer:
    committed_offset: int = 100
    generation: int = 3
    seeks: list[tuple[TopicPartition, int]] = field(default_factory=list)
    config: dict[str, Any] = field(
        default_factory=lambda: {"auto_offset_reset": "earliest", "group_id": "group"}
    )
    # How many committed-offset fetches time out first (a pending transactional commit).
    unstable: int = 0

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def group_metadata(self) -> ConsumerGroupMetadata:
        member = "member-1" if self.generation >= 0 else ""
        return ConsumerGroupMetadata("group", self.generation, member)

    def committed(self, tp: TopicPartition, timeout_ms: int | None = None) -> int:
        if self.unstable:
            self.unstable -= 1
            raise KafkaTimeoutError()  # kafka-python, after retrying UNSTABLE_OFFSET_COMMIT
        return self.committed_offset

    def topics(self) -> set[str]:
        return {"events", "predictions", "dlq"}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


class Harness:
    def __init__(self, *producers: FakeProducer) -> None:
        self.consumer = FakeConsumer()
        self.producers: Iterator[FakeProducer] = iter(producers)
        self.made: list[FakeProducer] = []
        self.committed: list[Batch] = []
        self.rewound: list[BaseException] = []
        self.delivery = ExactlyOnce(
            self.consumer,
            self._make,
            DomainTopics("transactions", "events", "predictions", "labels", "dlq"),
            fault=lambda point: None,
            on_committed=self.committed.append,
            on_rewind=lambda offsets, error: self.rewound.append(error),
            flush_timeout_s=1.0,
            retry_s=0.0,
            # The fake producer has send() only: the public path of every shortcut.
            internals=KafkaInternals(enabled=()),
        )

    def _make(self) -> Any:
        self.made.append(next(self.producers))
        return self.made[-1]


def a_batch(first: int = 120, count: int = 3) -> Batch:
    batch = batch_of({TP: [Record(first + i, f"k{i}".encode()) for i in range(count)]})
    batch.keys = [r.key for r in batch.records]
    batch.predictions = [b"{}" for _ in batch.records]
    return batch


def test_a_committed_batch_is_reported_and_the_producer_kept() -> None:
    h = Harness(FakeProducer())
    h.delivery.deliver(a_batch())
    assert len(h.committed) == 1
    assert not h.rewound
    assert h.made[0].calls == ["begin", "flush", "offsets", "commit"]


def test_offsets_refused_because_the_group_moved_on_abort_and_read_the_batch_again() -> None:
    h = Harness(FakeProducer())
    h.consumer.generation = -1  # kafka-python's "no generation" until the member rejoins
    h.delivery.deliver(a_batch(first=120))
    assert h.made[0].calls == ["begin", "flush", "abort"]  # never sent the offsets
    assert h.consumer.seeks == [(TP, 120)]
    assert len(h.made) == 1
    assert not h.committed


@pytest.mark.parametrize(
    "fail",
    [
        {"send": KafkaTimeoutError("expired")},
        {"flush": KafkaTimeoutError("flush timed out")},
        {"commit": KafkaTimeoutError("commit outcome unknown")},
    ],
)
def test_other_failures_start_over_from_the_committed_offsets(
    fail: dict[str, BaseException],
) -> None:
    h = Harness(FakeProducer(fail=fail), FakeProducer())
    h.consumer.committed_offset = 123  # e.g. the commit that timed out went through
    h.delivery.deliver(a_batch(first=120))
    assert "abort" not in h.made[0].calls
    assert h.made[0].closed
    assert len(h.made) == 2
    assert h.consumer.seeks == [(TP, 123)]
    assert len(h.rewound) == 1
    assert not h.committed


def test_fenced_starts_over_once_and_stops_when_fenced_again_soon_after() -> None:
    fenced = {"commit": ProducerFencedError()}
    h = Harness(FakeProducer(fail=fenced), FakeProducer(fail=fenced), FakeProducer())
    h.delivery.deliver(a_batch())
    assert len(h.made) == 2
    assert h.consumer.seeks == [(TP, 100)]
    with pytest.raises(ProducerFencedOutError, match="fenced twice"):
        h.delivery.deliver(a_batch())


def test_committed_offsets_that_do_not_come_abort_what_the_producer_id_left_hanging() -> None:
    # A broker stopped mid-commit left this producer id's last transaction open on the
    # outputs and the group's offsets (its coordinator thinks it complete): the start-over
    # aborts it with the new producer, then reads the committed offsets.
    h = Harness(FakeProducer(fail={"flush": KafkaTimeoutError("broker down")}), FakeProducer())
    h.consumer.unstable = 1
    h.delivery.deliver(a_batch(first=120))
    swept = h.made[1]
    assert swept.calls == ["begin", "flush", "offsets", "abort"]
    assert swept.sent == [("predictions", 0), ("dlq", 0)]  # every output partition
    assert h.consumer.seeks == [(TP, 100)]
    assert not swept.closed  # kept for the next batch
    h.delivery.deliver(a_batch(first=100))
    assert swept.calls[-4:] == ["begin", "flush", "offsets", "commit"]
    assert len(h.committed) == 1


def test_a_failed_sweep_takes_a_new_producer_and_sweeps_again() -> None:
    h = Harness(
        FakeProducer(fail={"flush": KafkaTimeoutError("broker down")}),
        FakeProducer(fail={"offsets": KafkaTimeoutError("coordinator gone again")}),
        FakeProducer(),
    )
    h.consumer.unstable = 1
    h.delivery.deliver(a_batch(first=120))
    assert h.made[1].closed
    assert h.made[2].calls == ["begin", "flush", "offsets", "abort"]
    assert h.consumer.seeks == [(TP, 100)]


def test_offsets_held_by_another_producer_are_waited_for_with_one_sweep() -> None:
    h = Harness(FakeProducer(fail={"flush": KafkaTimeoutError("broker down")}), FakeProducer())
    h.consumer.unstable = 3  # still pending after the sweep: not this producer's
    h.delivery.deliver(a_batch(first=120))
    assert h.made[1].calls.count("abort") == 1
    assert len(h.made) == 2
    assert h.consumer.seeks == [(TP, 100)]


def test_no_sweep_when_the_committed_offsets_come() -> None:
    h = Harness(FakeProducer(fail={"commit": KafkaTimeoutError("outcome unknown")}),
                FakeProducer())  # fmt: skip
    h.delivery.deliver(a_batch(first=120))
    assert h.made[1].calls == []
    assert h.made[1].sent == []


def test_a_fence_during_the_sweep_is_held_to_the_fenced_again_guard() -> None:
    # Another process taking this transactional id while it starts over fences every
    # sweep: the second fence within FENCED_AGAIN_S stops the worker instead of making
    # producers for ever.
    fenced = {"offsets": ProducerFencedError()}
    h = Harness(
        FakeProducer(fail={"flush": KafkaTimeoutError("broker down")}),
        FakeProducer(fail=fenced),
        FakeProducer(fail=fenced),
        FakeProducer(),
    )
    h.consumer.unstable = 5
    with pytest.raises(ProducerFencedOutError, match="fenced twice"):
        h.delivery.deliver(a_batch(first=120))
    assert len(h.made) == 3
