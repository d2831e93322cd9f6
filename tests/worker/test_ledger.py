"""The delivery ledger on its own (no Kafka): offsets in flight, acknowledged and
committed per partition, through failures, rebalances and seeks back."""

from __future__ import annotations

from dataclasses import dataclass, field

from kafka import TopicPartition

from inferloop.worker.ledger import DeliveryLedger

P0 = TopicPartition("events", 0)
P1 = TopicPartition("events", 1)


@dataclass
class B:
    """A batch: records ``[start, end)`` in each partition."""

    spans: dict[TopicPartition, tuple[int, int]]
    first_offsets: dict[TopicPartition, int] = field(init=False)
    next_offsets: dict[TopicPartition, int] = field(init=False)

    def __post_init__(self) -> None:
        self.first_offsets = {tp: a for tp, (a, _) in self.spans.items()}
        self.next_offsets = {tp: b for tp, (_, b) in self.spans.items()}


def batches() -> tuple[B, B, B]:
    return (
        B({P0: (0, 10), P1: (0, 5)}),
        B({P0: (10, 20)}),
        B({P0: (20, 25), P1: (5, 9)}),
    )


def test_acknowledged_batches_commit_together_one_commit_at_a_time() -> None:
    ledger: DeliveryLedger[B] = DeliveryLedger()
    a, b, c = batches()
    for batch in (a, b, c):
        ledger.sent(batch)
    assert ledger.start_commit() is None  # nothing acknowledged yet
    assert ledger.acknowledged() is a
    assert ledger.acknowledged() is b
    first = ledger.start_commit()
    assert first is not None
    assert first.batches == [a, b]
    assert first.offsets == {P0: 20, P1: 5}
    ledger.acknowledged()
    assert ledger.start_commit() is None  # one in flight at a time
    assert ledger.in_flight() == 3
    assert ledger.commit_succeeded(first)
    assert ledger.committed == {P0: 20, P1: 5}
    second = ledger.start_commit()
    assert second is not None
    assert second.batches == [c]
    assert ledger.commit_succeeded(second)
    assert ledger.committed == {P0: 25, P1: 9}
    assert ledger.in_flight() == 0


def test_a_failed_commit_goes_again_before_what_was_acknowledged_since() -> None:
    ledger: DeliveryLedger[B] = DeliveryLedger()
    a, b, _ = batches()
    ledger.sent(a)
    ledger.sent(b)
    ledger.acknowledged()
    failed = ledger.start_commit()
    assert failed is not None
    ledger.acknowledged()
    assert ledger.commit_failed(failed)
    assert ledger.committed == {}
    again = ledger.start_commit()
    assert again is not None
    assert again.batches == [a, b]
    assert again.offsets == {P0: 20, P1: 5}


def test_a_failed_send_drops_every_batch_behind_it_and_goes_back_to_the_earliest() -> None:
    ledger: DeliveryLedger[B] = DeliveryLedger()
    a, b, c = batches()
    for batch in (a, b, c):
        ledger.sent(batch)
    ledger.acknowledged()  # a is fine; b fails
    assert ledger.failed() == {P0: 10, P1: 5}
    assert ledger.oldest() is None
    assert ledger.unacknowledged() == 0
    commit = ledger.start_commit()
    assert commit is not None
    assert commit.batches == [a]  # what was acknowledged still commits


def test_a_revocation_takes_over_the_commit_in_flight_and_its_answer_counts_for_nothing() -> None:
    ledger: DeliveryLedger[B] = DeliveryLedger()
    a, b, _ = batches()
    ledger.sent(a)
    ledger.sent(b)
    ledger.acknowledged()
    in_flight = ledger.start_commit()
    assert in_flight is not None
    ledger.acknowledged()
    taken = ledger.take_acknowledged()
    assert [x is y for x, y in zip(taken.batches, [a, b], strict=True)] == [True, True]
    assert taken.offsets == {P0: 20, P1: 5}
    assert not ledger.commit_succeeded(in_flight)
    assert not ledger.commit_failed(in_flight)
    assert ledger.committed == {}  # the answer was not acted on
    ledger.committed_now(taken)
    assert ledger.committed == {P0: 20, P1: 5}
    assert ledger.in_flight() == 0
    assert ledger.start_commit() is None


def test_batches_forgotten_at_a_revocation_are_read_again_only_where_partitions_stay() -> None:
    ledger: DeliveryLedger[B] = DeliveryLedger()
    a, b, c = batches()
    ledger.sent(a)
    ledger.acknowledged()
    ledger.sent(b)
    ledger.sent(c)
    assert ledger.forget() == 2
    assert ledger.oldest() is None
    assert ledger.reread({P0}) == {P0: 10}  # P1 went to another member
    assert ledger.reread({P0, P1}) == {}  # once only
    commit = ledger.take_acknowledged()
    assert commit.batches == [a]


def test_partitions_lost_drop_everything_in_hand_and_the_commit_in_flight() -> None:
    ledger: DeliveryLedger[B] = DeliveryLedger()
    a, b, c = batches()
    for batch in (a, b, c):
        ledger.sent(batch)
    ledger.acknowledged()
    in_flight = ledger.start_commit()
    assert in_flight is not None
    ledger.acknowledged()
    assert ledger.lost() == 1
    assert ledger.in_flight() == 0
    assert not ledger.commit_succeeded(in_flight)
    assert ledger.take_acknowledged().batches == []
    assert ledger.committed == {}
    # Given back again: the batch that was in flight is read again from its start.
    assert ledger.reread({P0, P1}) == {P0: 20, P1: 5}


def test_committed_offsets_never_go_back() -> None:
    ledger: DeliveryLedger[B] = DeliveryLedger()
    a, b, _ = batches()
    ledger.sent(b)
    ledger.acknowledged()
    later = ledger.take_acknowledged()
    ledger.committed_now(later)
    ledger.sent(a)
    ledger.acknowledged()
    ledger.committed_now(ledger.take_acknowledged())
    assert ledger.committed == {P0: 20, P1: 5}
