"""The monitor's history on the real Redis: each version's live figures over time, written
in the evaluation's own MULTI/EXEC and bounded by count and age; drift alarms with their
time, detector, statistic and threshold, bounded too; floor alarms and retrain triggers
with their figure and threshold, kept across a restart (real Kafka too)."""

from __future__ import annotations

import json
import secrets
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import redis
from click.testing import CliRunner

from inferloop.cli import cli
from inferloop.keys import Keys
from inferloop.monitor import state
from inferloop.monitor.drift import DriftConfig, PageHinkley, take_alarms
from inferloop.monitor.state import Changes, StateStore
from inferloop.ops.monitor_history import (
    HISTORY_MAX_AGE_S,
    DriftAlarm,
    HistoryPoint,
    KeptAction,
    read_actions,
    read_alarms,
    read_history,
)
from inferloop.registry.acl import setuser_line
from inferloop.settings import Settings
from inferloop.topics import DomainTopics
from tests.helpers import settings_env
from tests.monitor.conftest import MonitorThread, publish_labels
from tests.worker.conftest import Champion
from tests.worker.factories import Fitted


def status(at: datetime, f1: float, *, versions: tuple[int, ...] = (2,)) -> dict[str, Any]:
    """An evaluation snapshot of ``versions`` (the first champion) as ``evaluate`` makes it."""
    window = {"n": 300, "positives": 50, "target": "ham_flagged",
              "f1": {"value": f1, "low": f1 - 0.05, "high": f1 + 0.05},
              "target_value": {"value": 0.01, "low": 0.0, "high": 0.02}}  # fmt: skip
    roles = {
        ("champion" if i == 0 else "challenger"): {"version": v, "windows": {"positives": window}}
        for i, v in enumerate(versions)
    }
    return {"domain": "emails", "evaluated_at": at.isoformat(), "roles": roles, "alarms": []}


@pytest.fixture
def store(settings: Settings, redis_client: redis.Redis) -> StateStore:
    """A store that writes a history point at every evaluation."""
    keys = Keys(settings.redis.key_prefix)
    return StateStore(redis_client, keys, "emails", 5.0, history_every_s=0.0)


def test_each_evaluation_adds_a_point_per_version_in_the_status_transaction(
    store: StateStore, redis_client: redis.Redis
) -> None:
    now = datetime.now(UTC)
    seen: list[str] = []
    with redis_client.monitor() as watch:  # type: ignore[no-untyped-call]
        store.put_status(status(now, 0.9, versions=(2, 3)))
        redis_client.echo("end-of-test")
        while not seen or "end-of-test" not in seen[-1]:
            seen.append(str(watch.next_command()["command"]))
    verbs = [c.split(" ")[0].upper() for c in seen]
    begin, end = verbs.index("MULTI"), verbs.index("EXEC")
    inside, outside = verbs[begin:end], verbs[:begin] + verbs[end:]
    assert inside.count("SET") == 1
    assert inside.count("RPUSH") == 2
    assert not {"SET", "RPUSH", "LTRIM"} & set(outside)
    points = read_history(redis_client, store.keys, "emails", 2)
    assert [(p.role, p.figure("positives", "f1")) for p in points] == [
        ("champion", (0.9, 0.9 - 0.05, 0.9 + 0.05))
    ]
    assert points[0].at_s == pytest.approx(now.timestamp())
    assert read_history(redis_client, store.keys, "emails", 3)[0].role == "challenger"


def test_the_history_is_bounded_by_count_and_by_age(
    store: StateStore, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state, "HISTORY_POINTS", 4)
    now = datetime.now(UTC)
    old = now - timedelta(seconds=HISTORY_MAX_AGE_S + 60)
    store.put_status(status(old, 0.5))
    for i in range(6):
        store.put_status(status(now + timedelta(seconds=i), 0.8 + i / 100))
    key = store.keys.monitor_history("emails", 2)
    assert redis_client.llen(key) == 4
    f1s = [
        p.figure("positives", "f1")[0] for p in read_history(redis_client, store.keys, "emails", 2)
    ]
    assert f1s == pytest.approx([0.82, 0.83, 0.84, 0.85])
    # A version no longer watched loses its list when the age bound passes.
    assert 0 < redis_client.pttl(key) <= HISTORY_MAX_AGE_S * 1000


def test_an_old_point_is_dropped_at_the_next_write_even_under_the_count(
    store: StateStore, redis_client: redis.Redis
) -> None:
    now = datetime.now(UTC)
    store.put_status(status(now - timedelta(seconds=HISTORY_MAX_AGE_S + 1), 0.5))
    store.put_status(status(now, 0.9))
    raw = redis_client.lrange(store.keys.monitor_history("emails", 2), 0, -1)
    assert len(raw) == 1


def test_points_are_written_at_most_every_history_interval(
    settings: Settings, redis_client: redis.Redis
) -> None:
    keys = Keys(settings.redis.key_prefix)
    store = StateStore(redis_client, keys, "emails", 5.0, history_every_s=3600.0)
    now = datetime.now(UTC)
    store.put_status(status(now, 0.9))
    store.put_status(status(now + timedelta(seconds=5), 0.7))
    assert len(read_history(redis_client, keys, "emails", 2)) == 1
    # The status itself is the latest evaluation every time.
    assert b"0.7" in redis_client.get(keys.monitor_status("emails"))  # type: ignore[operator]


def alarm(at_s: float, statistic: float = 30.0) -> DriftAlarm:
    return DriftAlarm(at_s, "score", statistic, 25.0, "both", 812, 2)


def test_a_batchs_alarms_are_stored_with_it_and_bounded(
    store: StateStore, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state, "ALARMS_KEPT", 3)
    store.acquire()
    for i in range(5):
        store.commit(Changes(offsets={"labels:0": i + 1}, alarms=[alarm(1000.0 + i)]))
    kept = read_alarms(redis_client, store.keys, "emails")
    assert [a.at_s for a in kept] == [1004.0, 1003.0, 1002.0]
    assert kept[0] == alarm(1004.0)
    # A batch retried after a lost answer stores its alarm once.
    store.commit(Changes(offsets={"labels:0": 5}, alarms=[alarm(1004.0)]))
    assert len(read_alarms(redis_client, store.keys, "emails")) == 3


def test_a_detectors_alarm_carries_its_statistic_threshold_and_time() -> None:
    config = DriftConfig(delta=0.05, threshold=25.0, min_samples=100)
    detector = PageHinkley(config)
    rng = np.random.default_rng(1)
    for x in np.r_[rng.normal(0.1, 0.02, 500), rng.normal(0.9, 0.02, 200)]:
        detector.update(float(x))
    alarms = take_alarms({"score": detector}, 7, 1234.5)
    assert len(alarms) == detector.alarms >= 1
    first = alarms[0]
    assert (first.detector, first.threshold, first.version, first.at_s) == (
        "score",
        25.0,
        7,
        1234.5,
    )
    assert first.statistic > first.threshold
    assert first.events > 500
    assert take_alarms({"score": detector}, 7, 1300.0) == []


def test_concurrent_readers_never_see_a_status_without_its_point(
    store: StateStore, redis_client: redis.Redis
) -> None:
    keys, base = store.keys, datetime.now(UTC)
    stop, torn = threading.Event(), []

    def read() -> None:
        reader = redis.Redis(connection_pool=redis_client.connection_pool)
        while not stop.is_set():
            with reader.pipeline(transaction=True) as pipe:
                pipe.get(keys.monitor_status("emails"))
                pipe.lrange(keys.monitor_history("emails", 2), -1, -1)
                shown, last = pipe.execute()
            if shown is not None and last:
                at = datetime.fromisoformat(json.loads(shown)["evaluated_at"]).timestamp()
                if abs(at - HistoryPoint.decode(last[0]).at_s) > 1e-6:
                    torn.append(at)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for i in range(200):
            store.put_status(status(base + timedelta(seconds=i), 0.9))
    finally:
        stop.set()
        thread.join()
    assert torn == []


def _acl_user(admin: redis.Redis, settings: Settings, role: str) -> tuple[str, redis.Redis]:
    """A Redis user made by ``role``'s ACL line for the test's prefix, and its client."""
    user, password = f"{role}-{uuid.uuid4().hex[:8]}", secrets.token_hex(16)
    line = setuser_line(role, user, settings.redis.key_prefix, secret=password)
    rules = line.split()[3:]
    admin.execute_command("ACL", "SETUSER", user, *rules)  # type: ignore[no-untyped-call]
    where = admin.connection_pool.connection_kwargs
    client = redis.Redis(host=where["host"], port=where["port"], username=user, password=password)
    return user, client


def test_the_monitor_role_writes_the_history_and_alarms_and_the_viewer_reads_them(
    settings: Settings, redis_client: redis.Redis
) -> None:
    keys = Keys(settings.redis.key_prefix)
    monitor_user, monitor = _acl_user(redis_client, settings, "monitor")
    viewer_user, viewer = _acl_user(redis_client, settings, "viewer")
    try:
        store = StateStore(monitor, keys, "emails", 5.0, history_every_s=0.0)
        store.acquire()
        now = datetime.now(UTC)
        store.put_status(status(now - timedelta(seconds=HISTORY_MAX_AGE_S + 5), 0.5))
        store.put_status(status(now, 0.9))
        store.commit(Changes(offsets={"labels:0": 1}, alarms=[alarm(now.timestamp())]))
        assert [
            p.figure("positives", "f1")[0] for p in read_history(viewer, keys, "emails", 2)
        ] == [0.9]
        assert read_alarms(viewer, keys, "emails") == [alarm(now.timestamp())]
        with pytest.raises(redis.exceptions.NoPermissionError):
            viewer.rpush(keys.monitor_alarms("emails"), "forged")
    finally:
        monitor.close()
        viewer.close()
        redis_client.acl_deluser(monitor_user, viewer_user)


def kept(at_s: float, kind: str = "floor") -> KeptAction:
    return KeptAction(at_s, kind, "raised", 2, 2, None, "f1", 0.41, 0.7, 300,
                      {"breached": ["f1"], "low": 0.36, "high": 0.46})  # fmt: skip


def test_kept_actions_are_stored_in_order_bounded_and_read_back_at_start(
    store: StateStore, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state, "ACTIONS_KEPT", 3)
    store.acquire()
    for i in range(5):
        store.commit(Changes(detectors={"policy": {"points": {}}}, actions=[kept(1000.0 + i)]))
    newest_first = read_actions(redis_client, store.keys, "emails")
    assert [a.at_s for a in newest_first] == [1004.0, 1003.0, 1002.0]
    assert newest_first[0] == kept(1004.0)
    assert newest_first[0].summary() == "f1 0.41 against 0.7 on 300 labelled events"
    # What a restarted monitor reads back: oldest first.
    assert [a.at_s for a in store.load().actions] == [1002.0, 1003.0, 1004.0]


def cli_status(settings: Settings) -> dict[str, Any]:
    result = CliRunner(env=settings_env(settings)).invoke(
        cli, ["monitor", "status", "transactions", "--json"]
    )
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.output))


def test_a_floor_alarm_and_its_trigger_are_kept_with_their_figure_across_a_restart(
    *,
    msettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
    redis_client: redis.Redis,
    monitor_thread: Callable[..., MonitorThread],
) -> None:
    # The fitted trees behind a threshold that flags almost nothing: the fraud recall is
    # far below its live floor.
    bad = champion(Fitted(model_v1.pipeline, 0.9999))
    keys = Keys(msettings.redis.key_prefix)
    publish_labels(msettings, topics.labels, range(800))
    monitor_thread(msettings, until_idle_s=3.0).join(120)

    stored = read_actions(redis_client, keys, "transactions")
    floors = [a for a in stored if a.kind == "floor"]
    recall = next(a for a in floors if a.figure == "target_value")
    floor = msettings.monitor.transactions_live_floor_fraud_recall
    assert floor is not None
    assert (recall.version, recall.champion, recall.outcome) == (bad.version, bad.version, "raised")
    assert recall.threshold == floor
    assert recall.value is not None
    assert recall.value < floor
    assert recall.evidence["high"] < floor  # the whole interval below: that raised it
    assert recall.labelled > 0
    assert recall.evidence["positives"] > 0
    (trigger,) = [a for a in stored if a.kind == "retrain-trigger"]
    assert (trigger.outcome, trigger.version) == ("sent", bad.version)
    assert trigger.figure in recall.evidence["breached"]
    assert trigger.evidence["trigger_id"].startswith("monitor-transactions-floor-")
    assert trigger.labelled > 0
    assert abs(trigger.at_s - recall.at_s) < 1.0
    # Raised at every evaluation, kept once while it lasts.
    assert len(floors) == len(recall.evidence["breached"])

    # A new monitor process: the alarm is still shown, with its time, and not kept twice.
    publish_labels(msettings, topics.labels, range(800, 1000))
    monitor_thread(msettings, until_idle_s=3.0).join(120)
    after = read_actions(redis_client, keys, "transactions")
    assert [a for a in after if a.kind == "floor"] == floors
    status = cli_status(msettings)
    shown = status["alarm_log"]
    assert recall.as_status() in shown
    # The status carries the breach of its evaluation, for the console to show.
    breach = status["floor_breach"]
    assert (breach["version"], breach["window"]) == (bad.version, "positives")
    assert breach["breached"]["target_value"]["high"] < floor
    assert any(a["kind"] == "retrain-trigger" for a in shown)
    assert [a["at_s"] for a in shown] == sorted((a["at_s"] for a in shown), reverse=True)
