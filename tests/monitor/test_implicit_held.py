"""The delayed reader's held records (pure logic, a fake consumer): a partition is read
again only when its first held event is due against the horizon, not on the wall clock,
so a label reader that lags does not make the records held in memory grow."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import TopicPartition

from inferloop.domains import get_domain
from inferloop.monitor.implicit import DelayedReader
from tests.worker.factories import tx_event

TP = TopicPartition("events", 0)
FETCH = 50
AFTER_S = 100.0


class FakeConsumer:
    """One partition of ``values``, fetched ``FETCH`` records at a time unless paused."""

    def __init__(self, values: list[bytes]) -> None:
        self.values, self.at, self.fetches = values, 0, 0
        self._paused: set[TopicPartition] = set()

    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[Any]]:
        if TP in self._paused or self.at >= len(self.values):
            return {}
        chunk = self.values[self.at : self.at + FETCH]
        records = [SimpleNamespace(value=v, offset=self.at + k) for k, v in enumerate(chunk)]
        self.at += len(chunk)
        self.fetches += 1
        return {TP: records}

    def pause(self, *tps: TopicPartition) -> None:
        self._paused.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self._paused.difference_update(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def highwater(self, tp: TopicPartition) -> int:
        return len(self.values)

    def position(self, tp: TopicPartition) -> int:
        return self.at


def test_held_records_stay_one_fetch_while_the_horizon_lags(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = datetime.now(UTC) - timedelta(days=1)
    values = [
        json.dumps(tx_event(i, event_time=(base + timedelta(seconds=i)).isoformat())).encode()
        for i in range(200)
    ]
    consumer = FakeConsumer(values)
    reader = DelayedReader(consumer, get_domain("transactions"), AFTER_S)
    horizon = base.timestamp() + AFTER_S + 9.5  # events 0-9 are due
    clock = [base.timestamp() + 86_400.0]
    # The wall clock runs on (an old release was on it): it must not matter.
    monkeypatch.setattr("inferloop.monitor.implicit.time.time", lambda: clock[0])

    judged = []
    for _ in range(5):
        due = reader.poll(horizon)
        judged.append(len(due.batch) if due.batch is not None else 0)
        clock[0] += 10.0
    assert judged == [10, 0, 0, 0, 0]
    assert consumer.fetches == 1
    assert reader.held_records == FETCH - 10
    assert reader.judged_through_s == horizon  # held, its next event not due

    # The horizon moves past all held records: they are judged, then the next fetch.
    horizon = base.timestamp() + AFTER_S + 60.5  # events 0-60 are due
    first, second = reader.poll(horizon), reader.poll(horizon)
    assert first.batch is not None
    assert len(first.batch) == FETCH - 10
    assert first.offsets == {"events:0": FETCH}
    assert second.batch is not None
    assert len(second.batch) == 11
    assert second.offsets == {"events:0": 61}
    assert consumer.fetches == 2
    assert reader.held_records == FETCH - 11
