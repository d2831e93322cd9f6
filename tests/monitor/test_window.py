"""The window's bounds and de-duplication (pure logic, no services)."""

from __future__ import annotations

import struct

import numpy as np

from inferloop.domains.idhash import id_hash
from inferloop.monitor.window import Bounds, Entry, Window, arrays, sampled


def entry(i: int, y: int, at_s: float = 0.0, scores: dict[int, float] | None = None) -> Entry:
    return Entry(i, y, 0, at_s, 1.0, scores if scores is not None else {1: 0.5})


def test_an_entry_packs_to_26_bytes_and_8_per_version_and_back() -> None:
    e = Entry(2**64 - 1, 1, 7, 1_700_000_000.25, 3.5, {3: 0.25, 4: 0.75})
    packed = e.pack()
    assert len(packed) == 26 + 2 * 8
    assert Entry.unpack(packed) == e


def test_the_window_keeps_the_last_positives_and_the_negatives_among_them() -> None:
    window = Window(Bounds(positives=2, time_s=10.0, max_events=1000))
    for i, y in enumerate([1, 0, 0, 1, 0, 1, 0, 0]):
        window.add(entry(i, y))
    # Every label is older than the time window: only the positives' window holds.
    assert window.trim(now_s=100.0) == 3
    assert [e.id_hash for e in window] == [3, 4, 5, 6, 7]
    assert window.positives == 2
    assert [e.id_hash for e in window.by_positives()] == [3, 4, 5, 6, 7]


def test_the_time_window_keeps_what_the_positives_window_would_drop() -> None:
    window = Window(Bounds(positives=1, time_s=10.0, max_events=1000))
    for i in range(5):
        window.add(entry(i, 1, at_s=95.0))
    assert window.trim(now_s=100.0) == 0
    assert len(window.by_time(100.0)) == 5
    assert len(window.by_positives()) == 1


def test_the_hard_bound_holds_whatever_the_windows_ask() -> None:
    window = Window(Bounds(positives=50, time_s=1e9, max_events=100))
    for i in range(250):
        window.add(entry(i, 0, at_s=99.0))
    assert window.trim(now_s=100.0) == 150
    assert len(window) == 100
    assert window.get(149) is None
    assert window.get(150) is not None


def test_an_event_id_counts_once() -> None:
    window = Window(Bounds(positives=5, time_s=10.0, max_events=100))
    assert window.add(entry(1, 1))
    assert not window.add(entry(1, 0))
    assert len(window) == 1
    assert window.positives == 1


def test_arrays_take_only_the_entries_a_version_scored() -> None:
    entries = [entry(1, 1, scores={1: 0.9}), entry(2, 0, scores={1: 0.1, 2: 0.2})]
    y, s = arrays(entries, 2)
    assert y.tolist() == [0]
    assert s.tolist() == [0.2]


def test_the_served_sample_is_about_its_fraction_of_ids() -> None:
    chosen = sum(sampled(id_hash(f"tx-{i}"), 0.01) for i in range(100_000))
    assert 850 < chosen < 1150
    assert not sampled(id_hash("tx-1"), 0.0)
    assert sampled(id_hash("tx-1"), 1.0)


def test_an_entry_packs_its_head_then_each_version_and_score() -> None:
    e = Entry(12345, 0, 2, 1_700_000_000.5, 0.25, {9: 0.125, 2: 0.5, 4: 1.0})
    head = struct.pack("<QBIdfB", 12345, 0, 2, 1_700_000_000.5, 0.25, 3)
    scores = b"".join(struct.pack("<If", v, s) for v, s in ((9, 0.125), (2, 0.5), (4, 1.0)))
    assert e.pack() == head + scores
    assert Entry(1, 1, 0, 0.0, 0.0, {}).pack() == struct.pack("<QBIdfB", 1, 1, 0, 0.0, 0.0, 0)


def test_arrays_of_a_version_that_scored_every_entry() -> None:
    entries = [entry(1, 1, scores={1: 0.9, 2: 0.3}), entry(2, 0, scores={1: 0.1, 2: 0.2})]
    y, s = arrays(entries, 2)
    assert y.dtype == np.int8
    assert y.tolist() == [1, 0]
    assert s.tolist() == [0.3, 0.2]
    assert arrays([], 2)[0].size == 0
