"""Implicit negatives on real Kafka and Redis: an event with no label ``N`` seconds after
its event time is counted as a negative, one with a label is not, a late label is
counted apart (its event stays an implicit negative), and a monitor killed mid-stream
and started again counts each event once."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import redis

from inferloop.keys import Keys
from inferloop.monitor.state import StateStore
from inferloop.settings import Settings
from inferloop.topics import DomainTopics
from tests.monitor.conftest import MonitorProcess, MonitorThread, truth, with_monitor
from tests.worker.conftest import Champion, wait_for
from tests.worker.factories import Fitted, publish, tx_event

DOMAIN = "transactions"


def iso(moment: datetime) -> str:
    return moment.isoformat()


def publish_events_at(
    settings: Settings, topic: str, ids: Sequence[int], event_time: datetime
) -> None:
    values = (json.dumps(tx_event(i, event_time=iso(event_time))).encode() for i in ids)
    publish(settings, topic, values, (f"tx-{i}".encode() for i in ids))


def publish_labels_at(
    settings: Settings, topic: str, ids: Sequence[int], event_time: datetime, delay_s: float
) -> None:
    """Labels of ``tx_event(i)`` at ``event_time``, labelled ``delay_s`` after it."""
    labelled_at = iso(event_time + timedelta(seconds=delay_s))
    values = (
        json.dumps(
            tx_event(i, event_time=iso(event_time))
            | {"label": truth(i), "labelled_at": labelled_at, "label_source": "chargeback"}
        ).encode()
        for i in ids
    )
    publish(settings, topic, values, (f"tx-{i}".encode() for i in ids))


def counts(client: redis.Redis, settings: Settings) -> dict[str, int]:
    raw: dict[bytes, bytes] = client.hgetall(  # type: ignore[assignment]
        Keys(settings.redis.key_prefix).monitor_counts(DOMAIN)
    )
    return {k.decode(): int(v) for k, v in raw.items()}


def test_unlabelled_events_become_negatives_after_n_and_labelled_ones_do_not(
    *,
    msettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
    redis_client: redis.Redis,
    monitor_thread: Callable[..., MonitorThread],
) -> None:
    champion(model_v1)
    after_s = 4.0
    settings = with_monitor(msettings, transactions_implicit_negative_after_s=after_s)
    now = datetime.now(UTC)
    ids, labelled = list(range(200)), list(range(20))
    publish_events_at(settings, topics.events, ids, now)
    publish_labels_at(settings, topics.labels, labelled, now, delay_s=0.5)
    # A late label: its delay exceeds N, so its event (199) stays an implicit negative.
    publish_labels_at(settings, topics.labels, [199], now, delay_s=after_s + 5)

    summary = monitor_thread(settings, until_idle_s=after_s + 4).join(90)

    found = counts(redis_client, settings)
    assert found["labels"] == len(labelled)
    assert found["implicit_negatives"] == len(ids) - len(labelled)
    assert found["implicit_labelled"] == len(labelled)
    assert found[f"implicit_late:{truth(199)}"] == 1
    assert found.get("duplicates", 0) == 0
    assert summary.labels == len(labelled)
    keys = Keys(settings.redis.key_prefix)
    stored = StateStore(redis_client, keys, DOMAIN, lease_s=1).load()
    assert len(stored.entries) == len(ids)
    assert len({e.id_hash for e in stored.entries}) == len(ids)
    # The labelled events keep their label; every other one is a negative.
    assert sum(e.y for e in stored.entries) == sum(truth(i) == "fraud" for i in labelled)
    implicit = [e for e in stored.entries if abs(e.delay_s - after_s) < 1e-6]
    assert len(implicit) == len(ids) - len(labelled)
    assert all(e.labelled_at_s >= now.timestamp() + after_s - 1e-3 for e in implicit)
    assert sum(o for f, o in stored.offsets.items() if f.startswith("events:")) == len(ids)


def test_no_event_is_judged_before_it_is_due(
    *,
    msettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
    redis_client: redis.Redis,
    monitor_thread: Callable[..., MonitorThread],
) -> None:
    champion(model_v1)
    settings = with_monitor(msettings, transactions_implicit_negative_after_s=3600.0)
    publish_events_at(settings, topics.events, list(range(50)), datetime.now(UTC))
    publish_labels_at(settings, topics.labels, [0], datetime.now(UTC), delay_s=0.0)

    handle = monitor_thread(settings, until_idle_s=4.0)
    handle.join(60)

    found = counts(redis_client, settings)
    assert found["labels"] == 1
    assert found.get("implicit_negatives", 0) == 0
    # The delayed reader did read the events: all of them are held, none judged.
    implicit = handle.monitor.implicit
    assert implicit is not None
    assert implicit.reader.held_records == 50
    stored = StateStore(redis_client, Keys(settings.redis.key_prefix), DOMAIN, 1).load()
    assert not any(f.startswith("events:") for f in stored.offsets)


def test_a_monitor_killed_and_restarted_counts_each_implicit_negative_once(
    *,
    msettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
    redis_client: redis.Redis,
    monitor_process: Callable[..., MonitorProcess],
) -> None:
    champion(model_v1)
    n, labelled = 4000, list(range(0, 4000, 10))
    # Events 40 s old with N = 30 s: all due at once; labels 1 s after each event.
    event_time = datetime.now(UTC) - timedelta(seconds=40)
    settings = with_monitor(
        msettings, transactions_implicit_negative_after_s=30.0, max_batch_size=50
    )
    publish_labels_at(settings, topics.labels, labelled, event_time, delay_s=1.0)
    publish_events_at(settings, topics.events, list(range(n)), event_time)

    first = monitor_process(settings)
    try:
        wait_for(
            lambda: counts(redis_client, settings).get("implicit_negatives", 0) >= 400,
            120, "a part of the implicit negatives",
        )  # fmt: skip
    finally:
        print(first.log())
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    at_kill = counts(redis_client, settings)["implicit_negatives"]
    assert at_kill < n - len(labelled)

    # Idle long: on a loaded machine an idle stop can come before the delayed reader's
    # first fetch, and leave due events for the next start.
    second = monitor_process(settings, "--idle-timeout-s", "15")
    assert second.process.wait(180) == 0, second.log()

    found = counts(redis_client, settings)
    names = ("labels", "implicit_negatives", "implicit_labelled", "duplicates", "implicit_rejects")
    assert {name: found.get(name, 0) for name in names} == {
        "labels": len(labelled), "implicit_negatives": n - len(labelled),
        "implicit_labelled": len(labelled), "duplicates": 0, "implicit_rejects": 0,
    }, (found, second.log()[-3000:])  # fmt: skip
    stored = StateStore(redis_client, Keys(settings.redis.key_prefix), DOMAIN, 1).load()
    assert len({e.id_hash for e in stored.entries}) == len(stored.entries) == n


def test_labelled_ids_are_kept_until_their_events_are_judged_after_a_long_stop(
    *,
    msettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
    redis_client: redis.Redis,
    monitor_thread: Callable[..., MonitorThread],
) -> None:
    """Events 10 h old, labelled, read by a first monitor before they were due; the next
    monitor starts with them more than N + 2 h past due (a long stop, here N cut from
    24 h to 1 h rather than waiting): the labelled ids are kept until those events were
    judged, so the labelled ones are not negatives as well."""
    champion(model_v1)
    event_time = datetime.now(UTC) - timedelta(hours=10)
    ids, labelled = list(range(100)), list(range(0, 100, 5))
    publish_events_at(msettings, topics.events, ids, event_time)
    publish_labels_at(msettings, topics.labels, labelled, event_time, delay_s=60.0)
    day = with_monitor(msettings, transactions_implicit_negative_after_s=24 * 3600.0)
    monitor_thread(day, until_idle_s=3.0).join(60)
    assert counts(redis_client, msettings)["labels"] == len(labelled)

    hour = with_monitor(msettings, transactions_implicit_negative_after_s=3600.0)
    monitor_thread(hour, until_idle_s=4.0).join(60)

    found = counts(redis_client, msettings)
    names = ("labels", "implicit_negatives", "implicit_labelled", "duplicates")
    assert {name: found.get(name, 0) for name in names} == {
        "labels": len(labelled), "implicit_negatives": len(ids) - len(labelled),
        "implicit_labelled": len(labelled), "duplicates": 0,
    }, found  # fmt: skip


def test_a_label_read_after_its_event_was_judged_is_late_whatever_its_stamp(
    *,
    msettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
    redis_client: redis.Redis,
    monitor_thread: Callable[..., MonitorThread],
) -> None:
    """A label stamped 1 s after its event (N = 30 s) but read once its event was judged
    (by a monitor since restarted: the horizon is stored with the offsets) is late: the
    event keeps its one outcome, the implicit negative."""
    champion(model_v1)
    settings = with_monitor(msettings, transactions_implicit_negative_after_s=30.0)
    event_time = datetime.now(UTC) - timedelta(seconds=100)
    ids, labelled = list(range(100)), list(range(0, 100, 5))
    publish_events_at(settings, topics.events, ids, event_time)
    monitor_thread(settings, until_idle_s=3.0).join(60)
    assert counts(redis_client, settings)["implicit_negatives"] == len(ids)

    publish_labels_at(settings, topics.labels, labelled, event_time, delay_s=1.0)
    monitor_thread(settings, until_idle_s=3.0).join(60)

    found = counts(redis_client, settings)
    late = sum(n for name, n in found.items() if name.startswith("implicit_late:"))
    assert (late, found.get("labels", 0), found.get("duplicates", 0)) == (len(labelled), 0, 0)
    assert found["implicit_negatives"] == len(ids)
    stored = StateStore(redis_client, Keys(settings.redis.key_prefix), DOMAIN, 1).load()
    assert len(stored.entries) == len(ids)
    assert not any(e.y for e in stored.entries)
