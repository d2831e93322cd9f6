"""Crashes at the worst points, zombies and SIGTERM, with real worker processes."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path

from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from inferloop.ops.lag import group_lag
from inferloop.settings import Settings
from inferloop.topics import DomainTopics, create_domain_topics, for_settings
from inferloop.worker.deadletter import H_DETAIL, H_REASON, header
from inferloop.worker.loop import RunLimits
from tests.helpers import read_topic
from tests.worker.conftest import Champion, WorkerProcess, WorkerThread, wait_for, with_worker
from tests.worker.factories import (
    Fitted,
    duplicates,
    predictions,
    publish,
    publish_events,
    tx_bytes,
)

EVENTS = 1000


def test_at_least_once_killed_after_producing_before_committing_loses_nothing(
    *,
    wsettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
    worker_process: Callable[..., WorkerProcess],
    worker_thread: Callable[..., WorkerThread],
) -> None:
    champion(model_v1)
    publish_events(wsettings, topics.events, range(EVENTS))

    crashing = worker_process(with_worker(wsettings, fault="before_commit:kill:2"))
    assert crashing.wait(120) == -signal.SIGKILL, crashing.log()
    worker_thread(wsettings, limits=RunLimits(idle_timeout_s=3)).join(120)

    ids = [p.event_id for p in predictions(wsettings, topics.predictions)]
    assert set(ids) == {f"tx-{i}" for i in range(EVENTS)}
    # The batch written before the kill was not committed, so it was predicted again.
    assert duplicates(ids)


def test_exactly_once_killed_before_the_transaction_commit_shows_each_event_once(
    *,
    wsettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
    worker_process: Callable[..., WorkerProcess],
    worker_thread: Callable[..., WorkerThread],
) -> None:
    settings = with_worker(wsettings, delivery="exactly-once")
    champion(model_v1)
    publish_events(settings, topics.events, range(EVENTS))

    crashing = worker_process(with_worker(settings, fault="before_commit:kill:2"))
    assert crashing.wait(120) == -signal.SIGKILL, crashing.log()
    # The same slot again: its transactional id fences the dead one's open transaction.
    worker_thread(settings, limits=RunLimits(idle_timeout_s=3)).join(120)

    committed = [p.event_id for p in predictions(settings, topics.predictions)]
    everything = [
        p.event_id
        for p in predictions(settings, topics.predictions, isolation_level="read_uncommitted")
    ]
    assert sorted(committed) == sorted(f"tx-{i}" for i in range(EVENTS))
    # The killed transaction's copies are in the log, aborted: only read_uncommitted sees them.
    assert duplicates(everything)
    assert len(everything) > len(committed)


def test_a_zombie_frozen_past_its_session_is_fenced_writes_nothing_visible_and_starts_over(
    *,
    wsettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
    worker_process: Callable[..., WorkerProcess],
    worker_thread: Callable[..., WorkerThread],
) -> None:
    settings = with_worker(
        wsettings, delivery="exactly-once", session_timeout_ms=2000, transaction_timeout_ms=4000
    )
    champion(model_v1)
    publish_events(settings, topics.events, range(EVENTS))

    # Frozen with its second transaction open: outputs and offsets sent, not committed.
    zombie = worker_process(
        with_worker(settings, instance_id="zombie", fault="before_commit:stop:2")
    )
    wait_for(lambda: process_state(zombie.pid) == "T", 120, "the zombie to freeze")
    # Idle for longer than the zombie's transaction timeout: until the coordinator aborts
    # that transaction, the successor's offset fetch is refused (UnstableOffsetCommit) and
    # it reads nothing, which a loaded machine stretched past a 4 s idle limit.
    successor = worker_thread(with_worker(settings, instance_id="successor"),
                              limits=RunLimits(idle_timeout_s=12))  # fmt: skip
    successor.join(120)
    # The zombie wakes up fenced (its transaction timed out), starts over with a new
    # producer, rejoins the group and is given the partitions back: it must read on from
    # what the successor committed, not from where it stood, and write the newer events.
    zombie.signal(signal.SIGCONT)
    wait_for(lambda: "started over" in zombie.log(), 120, "the zombie to start over")
    publish_events(settings, topics.events, range(EVENTS, EVENTS + 200))
    predictions(settings, topics.predictions, expect=EVENTS + 200)
    zombie.signal(signal.SIGTERM)
    code = zombie.wait(60)

    committed = [p.event_id for p in predictions(settings, topics.predictions)]
    everything = [
        p.event_id
        for p in predictions(settings, topics.predictions, isolation_level="read_uncommitted")
    ]
    assert sorted(committed) == sorted(f"tx-{i}" for i in range(EVENTS + 200))
    assert len(everything) > len(committed)  # the zombie's first writes exist, aborted
    assert code == 0, zombie.log()
    assert "producer fenced" in zombie.log()


def test_a_member_frozen_between_transactions_reads_on_from_what_its_successor_committed(
    *,
    wsettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
    worker_process: Callable[..., WorkerProcess],
    worker_thread: Callable[..., WorkerThread],
) -> None:
    # Frozen past its session with no transaction open, so nothing fences its producer.
    # Woken up, it reads on from the positions it had, behind what the successor committed
    # meanwhile; once its heartbeat learns it is out of the group, kafka-python gives its
    # transactions "no generation", which the broker accepted into the emptied group: the
    # successor's events were written and committed a second time.
    settings = with_worker(wsettings, delivery="exactly-once", session_timeout_ms=2000)
    champion(model_v1)
    publish_events(settings, topics.events, range(EVENTS))
    member = worker_process(
        with_worker(settings, instance_id="member", fault="after_commit:stop:2")
    )
    wait_for(lambda: process_state(member.pid) == "T", 120, "the member to freeze")
    successor = worker_thread(with_worker(settings, instance_id="successor"),
                              limits=RunLimits(idle_timeout_s=6))  # fmt: skip
    successor.join(120)
    member.signal(signal.SIGCONT)
    wait_for(lambda: member.log().count("partitions assigned:") == 2, 120,
             "the member to be given the partitions back")  # fmt: skip
    publish_events(settings, topics.events, range(EVENTS, EVENTS + 200))
    predictions(settings, topics.predictions, expect=EVENTS + 200)
    member.signal(signal.SIGTERM)
    code = member.wait(60)

    committed = [p.event_id for p in predictions(settings, topics.predictions)]
    assert sorted(committed) == sorted(f"tx-{i}" for i in range(EVENTS + 200)), duplicates(
        committed
    )
    assert code == 0, member.log()


def test_sigterm_finishes_commits_and_exits_cleanly(
    *,
    wsettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
    worker_process: Callable[..., WorkerProcess],
) -> None:
    settings = with_worker(wsettings, max_batch_size=50)
    champion(model_v1)
    publish_events(settings, topics.events, range(3000))
    worker = worker_process(settings)
    predictions(settings, topics.predictions, expect=500)

    worker.signal(signal.SIGTERM)
    assert worker.wait(settings.worker.shutdown_grace_s) == 0, worker.log()

    committed = {
        p.partition: p.committed or 0 for p in group_lag(settings, "transactions").partitions
    }
    below = {r.key.decode() for r in read_topic(settings, topics.events)
             if r.offset < committed[r.partition]}  # fmt: skip
    predicted = {p.event_id for p in predictions(settings, topics.predictions)}
    assert sum(committed.values()) >= 500
    # Everything predicted was committed, and everything committed was predicted.
    assert predicted == below
    assert "reason=SIGTERM" in worker.log()


CRASHING_STEP = '''
import os
import signal

import numpy as np

POISON = 666.25


def crash_on_poison(rows):
    """Kill the process, as a crash in native code would, on the poison amount."""
    if np.any(rows[:, -1] == POISON):
        os.kill(os.getpid(), signal.SIGKILL)
    return rows
'''


def test_a_batch_that_keeps_crashing_the_worker_is_dead_lettered_after_the_limit(
    *,
    wsettings: Settings,
    tmp_path: Path,
    champion: Champion,
    model_v1: Fitted,
    redis_client: object,
    worker_process: Callable[..., WorkerProcess],
    worker_thread: Callable[..., WorkerThread],
) -> None:
    one_partition = wsettings.model_copy(
        update={"topics": wsettings.topics.model_copy(update={"partitions": 1})}
    )
    settings = with_worker(one_partition, max_scoring_attempts=2)
    create_domain_topics(settings, "transactions")
    topics = for_settings(settings, "transactions")
    module_dir = tmp_path / "crashmod"
    module_dir.mkdir()
    (module_dir / "crashing_step.py").write_text(CRASHING_STEP)
    sys.path.insert(0, str(module_dir))
    try:
        import crashing_step  # type: ignore[import-not-found]

        guard = FunctionTransformer(crashing_step.crash_on_poison)
        champion(Fitted(Pipeline([("guard", guard), *model_v1.pipeline.steps]), 0.5))
    finally:
        sys.path.remove(str(module_dir))
    publish_events(settings, topics.events, range(20))
    publish(settings, topics.events, [tx_bytes(20, amount=666.25)], [b"tx-20"])
    publish_events(settings, topics.events, range(21, 40))
    env = {"PYTHONPATH": str(module_dir)}

    for attempt in (1, 2):
        run = worker_process(settings, env=env)
        assert run.wait(120) == -signal.SIGKILL, f"attempt {attempt}: {run.log()}"
    sys.path.insert(0, str(module_dir))
    try:
        summary = worker_thread(settings, limits=RunLimits(idle_timeout_s=3)).join(120)
    finally:
        sys.path.remove(str(module_dir))
    assert summary.dead_lettered == 40

    letters = read_topic(settings, topics.dlq, expect=40)
    assert sorted(r.key.decode() for r in letters) == sorted(f"tx-{i}" for i in range(40))
    assert {header(r.headers, H_REASON) for r in letters} == {"scoring_error"}
    assert "limit 2" in (header(letters[0].headers, H_DETAIL) or "")
    assert predictions(settings, topics.predictions) == []
    leftover = list(redis_client.scan_iter(match=f"{settings.redis.key_prefix}:worker:*"))  # type: ignore[attr-defined]
    assert leftover == []


def process_state(pid: int) -> str:
    """The one-letter state of a process (``T`` when stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]
