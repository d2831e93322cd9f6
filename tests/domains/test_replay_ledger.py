"""The replay ledger and its resume file: pure logic, no Kafka."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferloop.domains.replay_ledger import Ledger, PendingLabel, ResumeFileError, ResumeState


def label(position: int, due_ms: int = 0) -> PendingLabel:
    return PendingLabel(position, due_ms, f"k{position}".encode(), b'{"id":"x"}')


def test_acknowledgements_out_of_order_move_the_next_position_only_over_done_ones() -> None:
    ledger = Ledger(next_position=10)
    for _ in range(5):
        ledger.event_sent(100)
    for position in (12, 10, 14):
        ledger.event_acknowledged(position, 100)
    assert ledger.next_position == 11
    assert ledger.done_beyond == {12, 14}
    ledger.event_acknowledged(11, 100)
    assert ledger.next_position == 13
    assert ledger.done_beyond == {14}
    assert ledger.in_flight == 1
    assert ledger.in_flight_bytes == 100
    assert [ledger.is_done(p) for p in (9, 12, 13, 14)] == [True, True, False, True]


def test_a_failed_send_leaves_its_position_to_send_again() -> None:
    ledger = Ledger(next_position=0)
    ledger.event_sent(100)
    ledger.event_sent(100)
    ledger.failed(100, TimeoutError("expired"))
    ledger.event_acknowledged(1, 100)
    assert ledger.next_position == 0
    assert not ledger.is_done(0)
    assert (ledger.in_flight, ledger.in_flight_bytes) == (0, 0)
    assert ledger.first_error == "TimeoutError('expired')"
    assert ledger.counts.failed == 1


def test_the_resume_keeps_the_waiting_labels_of_done_positions_only_by_due_time() -> None:
    ledger = Ledger(next_position=0)
    for position, due in ((0, 300), (1, 100), (2, 200), (3, 50)):
        ledger.event_sent(100)
        ledger.label_queued(label(position, due))
    ledger.event_acknowledged(0, 100)
    ledger.event_acknowledged(2, 100)
    ledger.label_sent(100)
    ledger.label_acknowledged(2, 100)  # acknowledged: not waiting any more
    # 1 and 3 are not done: their events are sent again, and their labels made again.
    assert [x.position for x in ledger.resume_labels()] == [0]
    ledger.event_acknowledged(1, 100)
    assert [x.position for x in ledger.resume_labels()] == [1, 0]


def test_in_a_labels_only_replay_the_label_is_what_makes_a_position_done() -> None:
    ledger = Ledger(next_position=5, labels_only=True)
    ledger.label_queued(label(5))
    ledger.label_sent(100)
    assert not ledger.is_done(5)
    ledger.label_acknowledged(5, 100)
    assert ledger.is_done(5)
    assert ledger.resume_labels() == ()


def test_in_a_labels_only_replay_a_withheld_label_makes_its_position_done() -> None:
    ledger = Ledger(next_position=5, labels_only=True)
    ledger.label_withheld(6)
    ledger.label_queued(label(5))
    ledger.label_sent(100)
    ledger.label_withheld(7)
    assert ledger.next_position == 5
    ledger.label_acknowledged(5, 100)
    assert ledger.next_position == 8
    assert ledger.done_beyond == set()


def test_a_withheld_label_leaves_the_position_to_its_event_when_events_are_sent() -> None:
    ledger = Ledger(next_position=5)
    ledger.label_withheld(5)
    assert not ledger.is_done(5)
    ledger.event_sent(100)
    ledger.event_acknowledged(5, 100)
    assert ledger.next_position == 6


def test_a_stall_counts_from_the_first_send_that_waits_not_from_an_idle_spell() -> None:
    ledger = Ledger(next_position=0)
    ledger.last_progress -= 100  # an old acknowledgement, then labels waited idle
    assert ledger.stalled_s() == 0.0
    ledger.event_sent(100)
    assert ledger.stalled_s() < 1.0
    ledger.last_progress -= 100
    assert ledger.stalled_s() >= 100


def test_the_resume_file_reads_back_what_was_written(tmp_path: Path) -> None:
    state = ResumeState(
        dataset="sms", domain="emails", events_topic="emails", labels_topic="emails.labels",
        plan={"limit": 10, "label_delay_s": 2.0}, next_position=7, done_beyond=(9, 11),
        labels=(label(3, 123), label(5, 456)), events_acknowledged=8, labels_acknowledged=2,
    )  # fmt: skip
    path = tmp_path / "deep" / "r.json"
    state.write(path)
    assert ResumeState.read(path) == state
    assert not path.with_suffix(".tmp").exists()


def test_a_file_that_is_not_a_resume_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"version": 1, "next_position": 3}')
    with pytest.raises(ResumeFileError):
        ResumeState.read(path)
    with pytest.raises(ResumeFileError):
        ResumeState.read(tmp_path / "missing.json")
