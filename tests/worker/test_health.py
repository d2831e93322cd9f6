"""The HTTP endpoint: metrics, liveness, readiness, idle when there is nothing to read."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Callable

from inferloop.settings import Settings
from inferloop.topics import create_domain_topics, for_settings
from tests.worker.conftest import Champion, WorkerThread, wait_for
from tests.worker.factories import Fitted, predictions, publish_events


def get(port: int | None, path: str) -> tuple[int, str]:
    assert port is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_ready_once_a_model_is_loaded_idle_without_partitions_and_metrics_served(
    *,
    wsettings: Settings,
    champion: Champion,
    model_v1: Fitted,
    worker_thread: Callable[..., WorkerThread],
) -> None:
    settings = wsettings.model_copy(
        update={"topics": wsettings.topics.model_copy(update={"partitions": 1})}
    )
    create_domain_topics(settings, "transactions")
    topics = for_settings(settings, "transactions")
    first = worker_thread(settings)
    wait_for(lambda: first.worker.health.state == "waiting_for_champion", 30, "waiting")
    port = first.worker.http_port
    waiting_live, _ = get(port, "/health/live")
    waiting_ready, body = get(port, "/health/ready")

    version = champion(model_v1)
    second = worker_thread(settings)
    publish_events(settings, topics.events, range(50))
    predictions(settings, topics.predictions, expect=50)
    wait_for(lambda: first.worker.health.partitions + second.worker.health.partitions == 1, 30,
             "the one partition to be assigned")  # fmt: skip
    wait_for(lambda: first.worker.health.ready() and second.worker.health.ready(), 30, "ready")

    def states_now() -> set[str]:
        return {json.loads(get(w.worker.http_port, "/health/ready")[1])["state"]
                for w in (first, second)}  # fmt: skip

    # A late rebalance can leave both without the partition for a moment: ask until the
    # group has settled (or time out, and the assertion below shows what was seen).
    states: set[str] = set()

    def settled() -> bool:
        states.clear()
        states.update(states_now())
        return states == {"running", "idle"}

    with contextlib.suppress(AssertionError):
        wait_for(settled, 30, "one worker running and one idle")
    ready = [get(w.worker.http_port, "/health/ready")[0] for w in (first, second)]
    busy = first if first.worker.health.partitions else second
    status, metrics = get(busy.worker.http_port, "/metrics")

    assert (waiting_live, waiting_ready) == (200, 503)
    assert json.loads(body)["state"] == "waiting_for_champion"
    assert ready == [200, 200]
    assert states == {"running", "idle"}
    assert status == 200
    for name in (
        "inferloop_worker_events_consumed_total",
        "inferloop_worker_predictions_total",
        "inferloop_worker_positive_ratio",
        "inferloop_worker_holdout_positive_ratio",
        "inferloop_worker_batch_messages_bucket",
        "inferloop_worker_scoring_seconds_bucket",
        "inferloop_worker_end_to_end_seconds_bucket",
        "inferloop_worker_model_version",
        "inferloop_worker_assigned_partitions",
    ):
        assert name in metrics, name
    assert (
        f'inferloop_worker_model_version{{domain="transactions"}} {float(version.version)}'
        in metrics
    )
