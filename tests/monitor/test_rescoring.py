"""The monitor re-scores labelled events with every watched version, on real Kafka and
Redis: its scores reproduce what the worker served, wherever labels fall against the
predictions, and a label sent twice counts once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

from inferloop.keys import Keys
from inferloop.monitor.state import read_status
from inferloop.settings import Settings
from inferloop.topics import DomainTopics
from inferloop.worker.loop import RunLimits
from tests.monitor.conftest import MonitorThread, positives, publish_labels, truth
from tests.worker.conftest import Champion, WorkerThread, wait_for
from tests.worker.factories import Fitted, predictions, publish_events


def status(settings: Settings) -> dict[str, Any]:
    with redis.Redis.from_url(settings.redis.url) as client:
        found = read_status(client, Keys(settings.redis.key_prefix), "transactions")
    assert found is not None
    return found


def serve(settings: Settings, worker_thread: Callable[..., WorkerThread], n: int) -> None:
    """Run a real worker over ``n`` events and wait for its predictions."""
    worker_thread(settings, limits=RunLimits(max_messages=n)).join(120)
    predictions(settings, settings.topics.prefix + "transactions.predictions", expect=n)


def test_rescoring_matches_serving_on_every_sampled_event(
    *,
    msettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
    worker_thread: Callable[..., WorkerThread],
    monitor_thread: Callable[..., MonitorThread],
) -> None:
    version = champion(model_v1).version
    ids = list(range(400))
    publish_events(msettings, topics.events, ids)
    serve(msettings, worker_thread, len(ids))
    publish_labels(msettings, topics.labels, ids)

    summary = monitor_thread(msettings, until_idle_s=3.0).join(90)

    assert summary.labels == len(ids)
    assert summary.predictions == len(ids)
    snapshot = status(msettings)
    assert snapshot["checks"]["served_checked"] == len(ids)
    assert snapshot["checks"]["served_mismatches"] == 0
    champion_status = snapshot["roles"]["champion"]
    assert champion_status["version"] == version
    assert champion_status["served_checked"] == len(ids)
    # Every prediction of each class has its label: a share of 1 per predicted class.
    shares = champion_status["labelled_share"]
    assert sum(s["predicted"] for s in shares.values()) == len(ids)
    assert all(s["share"] == 1.0 for s in shares.values())
    window = snapshot["window"]
    assert window["stored_events"] == len(ids)
    assert window["stored_positives"] == positives(ids)
    assert champion_status["windows"]["time"]["n"] == len(ids)


def test_labels_before_and_after_their_predictions_are_all_checked(
    *,
    msettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
    worker_thread: Callable[..., WorkerThread],
    monitor_thread: Callable[..., MonitorThread],
) -> None:
    champion(model_v1)
    early, late = list(range(0, 200)), list(range(200, 400))
    # The early labels are read before any prediction of theirs exists.
    publish_labels(msettings, topics.labels, early)
    monitor = monitor_thread(msettings)
    wait_for(lambda: monitor.monitor.summary.labels == len(early), 60, "the early labels")
    publish_events(msettings, topics.events, early + late)
    serve(msettings, worker_thread, len(early) + len(late))
    wait_for(lambda: monitor.monitor.summary.predictions == 400, 60, "the predictions")
    publish_labels(msettings, topics.labels, late)
    wait_for(lambda: monitor.monitor.summary.labels == 400, 60, "the late labels")

    summary = monitor.stop()

    assert summary.labels == 400
    checks = status(msettings)["checks"]
    assert checks["served_checked"] == 400
    assert checks["served_mismatches"] == 0


def test_a_label_sent_twice_counts_once(
    *,
    msettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
    monitor_thread: Callable[..., MonitorThread],
) -> None:
    champion(model_v1)
    ids = list(range(300))
    publish_labels(msettings, topics.labels, ids)
    publish_labels(msettings, topics.labels, ids[:120])

    summary = monitor_thread(msettings, until_idle_s=3.0).join(90)

    assert summary.labels == 300
    assert summary.duplicates == 120
    snapshot = status(msettings)
    assert snapshot["checks"]["labels"] == 300
    assert snapshot["checks"]["duplicates"] == 120
    assert snapshot["window"]["stored_events"] == 300
    labelled = snapshot["roles"]["champion"]["labelled_share"]
    assert sum(s["labelled"] for s in labelled.values()) == 300
    assert {truth(i) for i in ids} == {"legit", "fraud"}
