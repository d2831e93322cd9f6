"""Several worker processes in one group: partitions move, nothing is lost or repeated."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable

import pytest

from inferloop.settings import Settings
from inferloop.topics import DomainTopics
from tests.worker.conftest import Champion, WorkerProcess, wait_for, with_worker
from tests.worker.factories import Fitted, duplicates, predictions, publish_events

ASSIGNED = re.compile(r"partitions assigned: (?!none)")


@pytest.mark.shortcuts_off_too
def test_two_processes_share_partitions_and_hand_them_over_exactly_once(
    *,
    wsettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
    worker_process: Callable[..., WorkerProcess],
) -> None:
    settings = with_worker(wsettings, delivery="exactly-once", max_batch_size=50)
    champion(model_v1)
    first = worker_process(with_worker(settings, instance_id="a"))
    second = worker_process(with_worker(settings, instance_id="b"))
    publish_events(settings, topics.events, range(1000))
    predictions(settings, topics.predictions, expect=1000)
    wait_for(lambda: bool(ASSIGNED.search(first.log()) and ASSIGNED.search(second.log())), 30,
             "both processes to hold partitions")  # fmt: skip

    # Stop one while the stream flows; start another; keep publishing.
    publish_events(settings, topics.events, range(1000, 2000))
    first.signal(signal.SIGTERM)
    assert first.wait(60) == 0, first.log()
    third = worker_process(with_worker(settings, instance_id="c"))
    publish_events(settings, topics.events, range(2000, 3000))
    predictions(settings, topics.predictions, expect=3000)
    wait_for(lambda: bool(ASSIGNED.search(third.log())), 30, "the new process to get partitions")
    for process in (second, third):
        process.signal(signal.SIGTERM)
    assert [second.wait(60), third.wait(60)] == [0, 0]

    ids = [p.event_id for p in predictions(settings, topics.predictions)]
    assert sorted(ids) == sorted(f"tx-{i}" for i in range(3000))
    assert duplicates(ids) == {}


CHILD_STARTED = re.compile(r"child (\d) started \(pid (\d+)\)")


def test_the_supervisor_restarts_a_crashed_child_and_forwards_sigterm(
    *,
    wsettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
    worker_process: Callable[..., WorkerProcess],
) -> None:
    champion(model_v1)
    supervisor = worker_process(wsettings, "--processes", "2")
    wait_for(lambda: supervisor.log().count(" consuming ") == 2, 60, "both children")
    publish_events(wsettings, topics.events, range(500))
    predictions(wsettings, topics.predictions, expect=500)

    children = dict(CHILD_STARTED.findall(supervisor.log()))
    os.kill(int(children["0"]), signal.SIGKILL)
    wait_for(lambda: supervisor.log().count(" consuming ") == 3, 60, "the restarted child")
    publish_events(wsettings, topics.events, range(500, 1000))
    # At-least-once: the killed child's uncommitted batches are scored again, so 1,000
    # records can come before every id has its prediction; read until every id has one.
    wanted = {f"tx-{i}" for i in range(1000)}
    seen: set[str] = set()

    def every_id_predicted() -> bool:
        # Everything the topic holds now (a count could stop at the re-scored records).
        seen.update(p.event_id for p in predictions(wsettings, topics.predictions))
        return seen >= wanted

    try:
        wait_for(every_id_predicted, 90, "a prediction for every event")
    except AssertionError as exc:
        missing = sorted(wanted - seen, key=lambda k: int(k.split("-")[1]))
        raise AssertionError(
            f"{exc}: {len(missing)} ids without one, e.g. {missing[:10]}\n{supervisor.log()}"
        ) from None
    supervisor.signal(signal.SIGTERM)
    assert supervisor.wait(60) == 0, supervisor.log()

    assert seen == wanted
    assert "child 0 crashed" in supervisor.log()
    assert supervisor.log().count("reason=SIGTERM") == 2
