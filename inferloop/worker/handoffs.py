"""Questions to kafka-python's IO thread that the consumer's own state already answers.

kafka-python 3.0 does all network work on one IO thread. A consumer's ``poll()`` asks
that thread two questions and waits for the answers, even when nothing needs doing: is
the group's coordinator known (``ensure_coordinator_ready``), and are there fetches to
send (``send_fetches``), though a fetch may be in flight to every broker the consumer
reads from. Each question is a byte written to a socket, a task on the IO thread and an
event to wait on, and under load each side waits for the GIL. Timed in a transactions
worker at half load (9,900 msg/s, three 30 s loads, 2026-12-06), its main thread asked
the first question 45-100 times a second and spent 27-35 ms of each second waiting for
the answer, which was always "known".

:func:`spare_handoffs` gives one consumer a shortcut for each: the answer is read from
the state the IO thread keeps (the coordinator's node and its connection; the brokers
with a fetch in flight), and when it is not "nothing to do" the question is asked as
before. With it, the same loads asked the first question only while starting. The
second one still went to the IO thread as often: at that rate the fetch a poll sent has
been answered by the next poll, which must then send one. The fetch shortcut spares the
polls that find nothing to read a round trip each: such a poll cost 273-383 us of CPU
with both shortcuts against 608-675 us without (three alternating rounds of 2,000
polls).

A read that is stale by the time it is used costs nothing either: a fetch answered just
after the check is drained by this poll (kafka-python wakes at once on a finished fetch)
and followed by a new one on the next.

The private attributes used here are those of kafka-python 3.0 (pinned ``<3.1`` in
pyproject.toml); ``tests/worker/test_handoffs.py`` holds them to that.
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaConsumer


def spare_handoffs(consumer: KafkaConsumer) -> None:
    """Answer ``consumer``'s two per-poll questions on the caller's thread when its state
    already does; ask its IO thread only otherwise."""
    coordinator = consumer._coordinator
    fetcher = consumer._fetcher
    ask_coordinator = coordinator.ensure_coordinator_ready
    ask_fetches = fetcher.send_fetches

    def ensure_coordinator_ready(timeout_ms: int | None = None) -> bool:
        node = coordinator.coordinator_id
        if node is not None and coordinator._client.connected(node):
            return True
        return bool(ask_coordinator(timeout_ms=timeout_ms))

    def send_fetches() -> list[Any]:
        if fetching_from_every_leader(fetcher):
            return []
        return list(ask_fetches())

    coordinator.ensure_coordinator_ready = ensure_coordinator_ready
    fetcher.send_fetches = send_fetches


def fetching_from_every_leader(fetcher: Any) -> bool:
    """Whether a fetch is in flight to the broker of every partition the fetcher would
    fetch now: then ``send_fetches`` would send nothing."""
    pending = fetcher._nodes_with_pending_fetch_requests
    if not pending:
        return False
    try:
        leaders = {fetcher._select_read_replica(tp) for tp in fetcher._fetchable_partitions()}
    except KeyError:  # a partition revoked between the two reads: let the IO thread see
        return False
    return bool(leaders <= pending)
