"""The retrain service: schedules, triggers, metrics and health, and a clean stop."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
import redis

from inferloop.keys import Keys
from inferloop.registry import ModelNotFoundError, Registry
from inferloop.retrain.lock import LeaseLock
from inferloop.retrain.progress import Progress
from inferloop.retrain.service import (
    MAX_WAITING_PER_DOMAIN,
    RetrainService,
    ServiceReport,
    trigger_request,
)
from inferloop.retrain.status import read_status
from inferloop.retrain.triggers import GROUP, Trigger, TriggerQueue, new_trigger_id
from inferloop.settings import Settings
from tests.retrain.conftest import serving, with_retrain
from tests.retrain.factories import emails, produce


def _queue(settings: Settings, client: redis.Redis) -> TriggerQueue:
    return TriggerQueue(client, Keys(settings.redis.key_prefix), outcome_ttl_s=60)


def _trigger() -> Trigger:
    return Trigger(new_trigger_id(), "emails", False, "pytest", "2025-01-01T00:00:00Z")


def _get(port: int, path: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
        return answer.status, answer.read()


def test_an_interval_schedule_runs_the_job_for_its_fire_time(
    retrain_settings: Settings, labels_topic: str, registry: Registry, redis_client: redis.Redis
) -> None:
    produce(retrain_settings, labels_topic, emails(300))
    settings = with_retrain(retrain_settings, emails_schedule="2s")
    service = RetrainService(settings, registry, metrics_port=0)
    started = time.time()
    report = service.run(max_runs=1, timeout_s=60)

    # Under load the next firing (2 s later) can start before the service stops; with no
    # new labels it skips.
    run, *later = report.runs
    assert (run.trigger, run.outcome) == ("schedule", "promoted"), run.reason
    assert [r.outcome for r in later] == ["skipped"] * len(later)
    assert run.fire_time is not None
    fire = datetime.fromisoformat(run.fire_time)
    stamp = round(fire.timestamp() * 1000)
    assert stamp % 2000 == 0  # a fire time of the aligned schedule...
    assert fire.timestamp() >= started - 2  # ...due while the service ran...
    assert datetime.fromisoformat(run.started_at) >= fire  # ...and not run before it
    claim = Keys(settings.redis.key_prefix).retrain_fire("emails", str(stamp))
    assert redis_client.get(claim) == b"test-service"
    status = read_status(redis_client, Keys(settings.redis.key_prefix), "emails", 60)
    assert status.last_success_at == report.runs[-1].finished_at
    metrics = service.metrics.render().decode()
    assert 'inferloop_retrain_runs_total{domain="emails",outcome="promoted"} 1.0' in metrics
    fired = f'inferloop_retrain_firings_total{{domain="emails",result="run"}} {1.0 + len(later)}'
    assert fired in metrics


def test_two_instances_run_each_firing_once(
    retrain_settings: Settings, labels_topic: str, registry: Registry
) -> None:
    produce(retrain_settings, labels_topic, emails(300))
    settings = with_retrain(retrain_settings, emails_schedule="2s", min_new_labels=0)
    first = RetrainService(with_retrain(settings, instance_id="a"), registry, metrics_port=0)
    second = RetrainService(with_retrain(settings, instance_id="b"), registry, metrics_port=0)
    reports: list[ServiceReport] = []
    thread = threading.Thread(target=lambda: reports.append(first.run(timeout_s=7)))
    thread.start()
    reports.append(second.run(timeout_s=7))
    thread.join(timeout=60)
    runs = [r for report in reports for r in report.runs]
    fire_times = [r.fire_time for r in runs]
    assert runs
    assert len(set(fire_times)) == len(fire_times)  # no firing ran twice
    metrics = first.metrics.render().decode() + second.metrics.render().decode()
    assert "claimed_elsewhere" in metrics or "skipped_running" in metrics


def test_a_trigger_is_run_exactly_once_by_two_instances(
    retrain_settings: Settings, labels_topic: str, registry: Registry, redis_client: redis.Redis
) -> None:
    produce(retrain_settings, labels_topic, emails(300))
    queue = _queue(retrain_settings, redis_client)
    trigger = _trigger()
    with (
        serving(with_retrain(retrain_settings, instance_id="a"), registry) as (a, a_reports),
        serving(with_retrain(retrain_settings, instance_id="b"), registry) as (_, b_reports),
    ):
        queue.send(trigger)
        outcome = queue.wait(trigger.trigger_id, timeout_s=60)
        code, body = _get(a.http.port, "/healthz")
        health = json.loads(body)
        code_metrics, metrics = _get(a.http.port, "/metrics")
    assert outcome.outcome == "promoted", outcome.reason
    assert outcome.run_id == trigger.trigger_id[:12]
    runs = [r for report in a_reports + b_reports for r in report.runs]
    assert [r.run_id for r in runs] == [outcome.run_id]
    assert [v.version for v in registry.list_versions("emails")] == [1]
    assert redis_client.xpending(queue.stream, GROUP)["pending"] == 0
    assert (code, health["status"], health["instance"]) == (200, "ok", "a")
    assert health["domains"]["emails"]["last_outcome"] == "promoted"
    assert list(health["domains"]["emails"]["last_by_outcome"]) == ["promoted"]
    assert code_metrics == 200
    assert b"inferloop_retrain_next_run_timestamp_seconds" in metrics


def test_a_trigger_left_by_a_stopped_instance_is_run(
    retrain_settings: Settings, labels_topic: str, registry: Registry, redis_client: redis.Redis
) -> None:
    produce(retrain_settings, labels_topic, emails(300))
    queue = _queue(retrain_settings, redis_client)
    queue.ensure_group()
    trigger = _trigger()
    queue.send(trigger)
    # Delivered to an instance that stopped before running it: pending, never acknowledged.
    assert [t.trigger_id for t in queue.read_new("gone", block_ms=100)] == [trigger.trigger_id]
    settings = with_retrain(retrain_settings, trigger_claim_idle_s=0.2)
    with serving(settings, registry):
        outcome = queue.wait(trigger.trigger_id, timeout_s=60)
    assert outcome.outcome == "promoted"
    assert redis_client.xpending(queue.stream, GROUP)["pending"] == 0


class Gate(Progress):
    """Holds a run at the start of its fit until the test lets it go."""

    def __init__(self, on_hold: Any = None) -> None:
        self.holding = threading.Event()
        self.go = threading.Event()
        self.on_hold = on_hold

    def begin(self, domain: str, step: str, total: int | None) -> None:
        if step == "fitting":
            self.holding.set()
            if self.on_hold is not None:
                self.on_hold()
            self.go.wait(timeout=60)


def test_a_stop_lets_a_running_fit_finish(
    retrain_settings: Settings, labels_topic: str, registry: Registry, redis_client: redis.Redis
) -> None:
    produce(retrain_settings, labels_topic, emails(300))
    queue = _queue(retrain_settings, redis_client)
    trigger = _trigger()
    gate = Gate()
    # A grace time well past the fit's (11-14 s for these 300 emails at load 10-15).
    settings = with_retrain(retrain_settings, shutdown_grace_s=120.0)
    service = RetrainService(settings, registry, metrics_port=0, progress=gate)

    def sigterm_mid_fit() -> None:
        service.request_stop()
        gate.go.set()

    gate.on_hold = sigterm_mid_fit
    queue.send(trigger)
    report = service.run(timeout_s=60)
    assert report.abandoned == []
    assert [r.outcome for r in report.runs] == ["promoted"]
    stored = queue.outcome(trigger.trigger_id)
    assert stored is not None
    assert stored.outcome == "promoted"


def test_a_stop_past_the_grace_time_releases_the_lease(
    retrain_settings: Settings, labels_topic: str, registry: Registry, redis_client: redis.Redis
) -> None:
    produce(retrain_settings, labels_topic, emails(300))
    keys = Keys(retrain_settings.redis.key_prefix)
    queue = _queue(retrain_settings, redis_client)
    trigger = _trigger()
    gate = Gate()
    settings = with_retrain(retrain_settings, shutdown_grace_s=0.3)
    service = RetrainService(settings, registry, metrics_port=0, progress=gate)
    gate.on_hold = service.request_stop
    queue.send(trigger)
    report = service.run(timeout_s=60)
    assert report.abandoned == ["emails"]
    assert LeaseLock(redis_client, keys.retrain_lock("emails"), 60).holder() is None
    gate.go.set()  # the fit ends; the run stops at its next step
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        last = read_status(redis_client, keys, "emails", 60).last_run
        if last is not None:
            break
        time.sleep(0.1)
    assert last is not None
    assert last.outcome == "cancelled"
    with pytest.raises(ModelNotFoundError):
        registry.list_versions("emails")
    # Not run to its end: the trigger waits for the next instance.
    assert queue.outcome(trigger.trigger_id) is None
    assert redis_client.xpending(queue.stream, GROUP)["pending"] == 1


def test_the_monitors_triggers_run_as_monitor_runs_each_with_its_own_run_id(
    retrain_settings: Settings, labels_topic: str, registry: Registry, redis_client: redis.Redis
) -> None:
    # Before: trigger "operator" and run id "monitor-emai" for every one of them.
    produce(retrain_settings, labels_topic, emails(300))
    queue = _queue(retrain_settings, redis_client)
    at = "2025-01-01T00:00:00Z"
    first = Trigger("monitor-emails-floor-7", "emails", True, "monitor", at)
    again = Trigger("monitor-emails-floor-7-v1-400", "emails", True, "monitor", at)
    with serving(retrain_settings, registry):
        outcomes = []
        for trigger in (first, again):
            queue.send(trigger)
            outcomes.append(queue.wait(trigger.trigger_id, timeout_s=120))
    assert [o.trigger for o in outcomes] == ["monitor", "monitor"]
    assert len({o.run_id for o in outcomes}) == 2
    assert all(len(o.run_id) == 12 for o in outcomes)
    assert trigger_request(_trigger()).trigger == "operator"


def _poll(done: Callable[[], bool], timeout_s: float) -> bool:
    """Whether ``done()`` came true within ``timeout_s`` (bounded generously: CI is loaded)."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _wait_outcome(queue: TriggerQueue, trigger_id: str, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = queue.outcome(trigger_id)
        if found is not None:
            return found
        time.sleep(0.1)
    return None


def test_triggers_sent_during_a_run_wait_for_it_and_the_newest_runs(
    retrain_settings: Settings, labels_topic: str, registry: Registry, redis_client: redis.Redis
) -> None:
    # Before: each trigger that arrived mid-run was answered lock_held and acknowledged
    # (the shift case lost 3-4 a run).
    produce(retrain_settings, labels_topic, emails(300))
    queue = _queue(retrain_settings, redis_client)
    at = "2025-01-01T00:00:00Z"
    first = _trigger()
    older = Trigger("monitor-emails-floor-7", "emails", True, "monitor", at)
    newer = Trigger("monitor-emails-floor-7-v1-400", "emails", True, "monitor", at)
    gate = Gate()
    with serving(retrain_settings, registry, progress=gate) as (_, reports):
        queue.send(first)
        assert gate.holding.wait(timeout=60), "the first run did not reach its fit"
        queue.send(older)
        queue.send(newer)
        # The older is answered at once by the newer; the newer waits, unanswered.
        superseded = _wait_outcome(queue, older.trigger_id, timeout_s=30)
        assert queue.outcome(newer.trigger_id) is None
        gate.go.set()
        ran = queue.wait(newer.trigger_id, timeout_s=120)
        done = queue.wait(first.trigger_id, timeout_s=30)
    assert superseded is not None
    assert superseded.outcome == "superseded"
    assert newer.trigger_id in superseded.reason
    assert done.outcome == "promoted"
    assert ran.outcome not in ("lock_held", "superseded"), ran.reason
    assert ran.trigger == "monitor"
    runs = [r.run_id for report in reports for r in report.runs]
    assert runs == [done.run_id, ran.run_id]  # two runs: the older never ran
    assert redis_client.xpending(queue.stream, GROUP)["pending"] == 0


def test_a_trigger_waits_for_a_lease_held_elsewhere_and_then_runs(
    retrain_settings: Settings, labels_topic: str, registry: Registry, redis_client: redis.Redis
) -> None:
    produce(retrain_settings, labels_topic, emails(300))
    keys = Keys(retrain_settings.redis.key_prefix)
    queue = _queue(retrain_settings, redis_client)
    trigger = _trigger()
    # Another instance (or the CLI) runs the domain: this service's job finds it held.
    lease = LeaseLock(redis_client, keys.retrain_lock("emails"), 60).acquire("elsewhere")
    try:
        with serving(retrain_settings, registry):
            queue.send(trigger)
            # Read by the service (pending) and held there, not answered.
            assert _poll(lambda: _pending(redis_client, queue) == 1, timeout_s=60)
            assert _wait_outcome(queue, trigger.trigger_id, timeout_s=2) is None
            assert _pending(redis_client, queue) == 1
            lease.release()
            outcome = queue.wait(trigger.trigger_id, timeout_s=120)
    finally:
        lease.release()
    assert outcome.outcome == "promoted", outcome.reason
    assert redis_client.xpending(queue.stream, GROUP)["pending"] == 0


def _pending(client: redis.Redis, queue: TriggerQueue) -> int:
    return int(client.xpending(queue.stream, GROUP)["pending"])


def test_different_triggers_sent_during_a_run_each_run_in_turn(
    retrain_settings: Settings, labels_topic: str, registry: Registry, redis_client: redis.Redis
) -> None:
    # Before: the operator's seeded run was answered 'superseded' by the monitor's
    # trigger that came after it, and never ran.
    produce(retrain_settings, labels_topic, emails(300))
    queue = _queue(retrain_settings, redis_client)
    at = "2025-01-01T00:00:00Z"
    first = _trigger()
    seeded = Trigger(new_trigger_id(), "emails", True, "pytest", at, seed=7)
    monitor = Trigger("monitor-emails-floor-7", "emails", True, "monitor", at)
    gate = Gate()
    with serving(retrain_settings, registry, progress=gate) as (_, reports):
        queue.send(first)
        assert gate.holding.wait(timeout=60), "the first run did not reach its fit"
        queue.send(seeded)
        queue.send(monitor)
        assert _poll(lambda: _pending(redis_client, queue) == 3, timeout_s=60)
        gate.go.set()
        outcomes = [queue.wait(t.trigger_id, timeout_s=120) for t in (first, seeded, monitor)]
    assert outcomes[0].outcome == "promoted", outcomes[0].reason
    for later in outcomes[1:]:
        assert later.outcome not in ("lock_held", "superseded"), later.reason
    runs = [r.run_id for report in reports for r in report.runs]
    assert runs == [o.run_id for o in outcomes]  # three runs, oldest trigger first
    assert outcomes[1].trigger == "operator"
    assert outcomes[2].trigger == "monitor"
    assert _pending(redis_client, queue) == 0


def test_a_firing_that_overlaps_a_run_keeps_the_domain_running(
    retrain_settings: Settings, labels_topic: str, registry: Registry, redis_client: redis.Redis
) -> None:
    # Before: the firing's lock_held run cleared the domain's running entry, so the stop
    # neither waited for the fit still going nor released its lease (abandoned []).
    produce(retrain_settings, labels_topic, emails(300))
    keys = Keys(retrain_settings.redis.key_prefix)
    queue = _queue(retrain_settings, redis_client)
    trigger = _trigger()
    gate = Gate()
    settings = with_retrain(retrain_settings, shutdown_grace_s=0.5)
    with serving(settings, registry, progress=gate) as (service, reports):
        queue.send(trigger)
        assert gate.holding.wait(timeout=60), "the run did not reach its fit"
        service._fire("emails")  # as the schedule would, mid-run
    gate.go.set()
    (report,) = reports
    assert [r.outcome for r in report.runs] == ["lock_held"]
    assert report.runs[0].trigger == "schedule"
    assert report.abandoned == ["emails"]
    assert LeaseLock(redis_client, keys.retrain_lock("emails"), 60).holder() is None
    assert queue.outcome(trigger.trigger_id) is None  # pending for the next instance


def test_past_the_bound_a_different_trigger_is_answered_at_once_and_a_same_one_merges(
    retrain_settings: Settings, registry: Registry, redis_client: redis.Redis
) -> None:
    queue = _queue(retrain_settings, redis_client)
    queue.ensure_group()
    at = "2025-01-01T00:00:00Z"
    different = [
        Trigger(new_trigger_id(), "emails", False, "pytest", at, seed=seed)
        for seed in range(MAX_WAITING_PER_DOMAIN + 1)
    ]
    same_as_first = Trigger(new_trigger_id(), "emails", False, "pytest", at, seed=0)
    for trigger in (*different, same_as_first):
        queue.send(trigger)
    read = queue.read_new("test-service", block_ms=100, count=100)
    service = RetrainService(retrain_settings, registry, metrics_port=0)
    service._running["emails"] = 1  # a run of the domain goes on here
    waits = [service._defer(trigger) for trigger in read]
    assert waits == [True] * MAX_WAITING_PER_DOMAIN + [False, True]
    refused = queue.outcome(different[-1].trigger_id)
    assert refused is not None
    assert refused.outcome == "lock_held"
    assert f"at most {MAX_WAITING_PER_DOMAIN}" in refused.reason
    merged = queue.outcome(different[0].trigger_id)
    assert merged is not None
    assert merged.outcome == "superseded"
    assert same_as_first.trigger_id in merged.reason
    waiting = [t.trigger_id for t in service._deferred["emails"]]
    assert waiting == [t.trigger_id for t in (*different[1:-1], same_as_first)]
