"""Shadow scoring of the registry's challenger, on the real Kafka and Redis."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from kafka.errors import KafkaTimeoutError
from kafka.future import Future

from inferloop.connections import admin_client
from inferloop.domains.idhash import in_sample
from inferloop.domains.schemas import Prediction
from inferloop.domains.transactions import TransactionsDomain
from inferloop.kafka_internals import KafkaInternals
from inferloop.registry import AliasTarget, ModelVersion, Registry
from inferloop.settings import Settings
from inferloop.topics import DomainTopics, create_domain_topics, for_settings
from inferloop.worker.loop import RunLimits
from inferloop.worker.metrics import WorkerMetrics
from inferloop.worker.shadow import (
    SHADOW_CHECK_S,
    BestEffortProducer,
    ShadowGate,
    ShadowOutput,
    ShadowRecords,
    sampled_indices,
)
from tests.helpers import read_topic, untrusted_registry
from tests.worker.conftest import (
    DOMAIN,
    Champion,
    WorkerProcess,
    WorkerThread,
    wait_for,
    with_worker,
)
from tests.worker.factories import (
    Fitted,
    duplicates,
    predictions,
    publish_events,
    tx_bytes,
    tx_event,
)

PREDICTED_AT = re.compile(rb'"predicted_at":"[^"]*"')
SOME_TIME = b'"predicted_at":"2000-01-01T00:00:00+00:00"'


def register(registry: Registry, fitted: Fitted) -> ModelVersion:
    """Register ``fitted`` (as the champion fixture does) without moving an alias."""
    return registry.register(
        DOMAIN, fitted.pipeline, domain=DOMAIN, threshold=fitted.threshold,
        input_schema_version=1, golden_events=[tx_event(900_000 + i) for i in range(8)],
        params={}, metrics={}, champion_metrics=None, lineage={"source": "pytest"},
        created_by="pytest",
    )  # fmt: skip


def make_challenger(registry: Registry, version: ModelVersion) -> None:
    registry.set_alias(DOMAIN, "challenger", version.version, expected_current=None,
                       reason="test")  # fmt: skip


def shadow_records(settings: Settings, topic: str, **kwargs: Any) -> list[dict[str, Any]]:
    """The shadow topic's records: the predictions' schema plus ``role``, checked."""
    out = []
    for record in read_topic(settings, topic, **kwargs):
        value = json.loads(record.value)
        assert value.pop("role") == "challenger"
        assert Prediction.model_validate(value).event_id.encode() == record.key
        out.append(value)
    return out


def second_topics(settings: Settings) -> tuple[Settings, DomainTopics]:
    """The same registry, a second set of topics (and consumer group)."""
    section = settings.topics.model_copy(update={"prefix": settings.topics.prefix + "b-"})
    other = settings.model_copy(update={"topics": section})
    create_domain_topics(other, DOMAIN)
    return other, for_settings(other, DOMAIN)


def without_predicted_at(settings: Settings, topic: str, n: int) -> dict[bytes, bytes]:
    records = read_topic(settings, topic, expect=n, timeout_s=60, isolation_level="read_committed")
    return {r.key: PREDICTED_AT.sub(SOME_TIME, r.value) for r in records}


@pytest.mark.parametrize(("delivery", "sample"), [("at-least-once", 1.0), ("exactly-once", 0.5)])
def test_the_challenger_scores_the_sample_in_shadow_and_the_predictions_stay_the_same(
    *,
    delivery: str,
    sample: float,
    wsettings: Settings,
    topics: DomainTopics,
    registry: Registry,
    champion: Champion,
    model_v1: Fitted,
    model_v2: Fitted,
    worker_thread: Callable[..., WorkerThread],
) -> None:
    n = 600
    settings = with_worker(wsettings, delivery=delivery, shadow_sample=sample, max_batch_size=50)
    v1 = champion(model_v1)
    # Without a challenger: predictions only.
    publish_events(settings, topics.events, range(n))
    worker_thread(settings, limits=RunLimits(max_messages=n)).join(120)
    alone = without_predicted_at(settings, topics.predictions, n)

    v2 = register(registry, model_v2)
    make_challenger(registry, v2)
    settings_b, topics_b = second_topics(settings)
    publish_events(settings_b, topics_b.events, range(n))
    running = worker_thread(settings_b, limits=RunLimits(max_messages=n))
    running.join(120)
    beside = without_predicted_at(settings_b, topics_b.predictions, n)

    # The champion's predictions, byte for byte, as without a challenger.
    assert len(alone) == n
    assert beside == alone
    assert {Prediction.model_validate_json(v).model.version for v in beside.values()} == {
        v1.version
    }
    assert read_topic(settings, topics.shadow) == []
    # Every sampled event (a stable hash of its id) once in shadow, by the challenger.
    wanted = {f"tx-{i}" for i in range(n) if in_sample(f"tx-{i}", sample)}
    assert 0 < len(wanted) <= n
    shadow = shadow_records(settings_b, topics_b.shadow, expect=len(wanted), timeout_s=30,
                            isolation_level="read_committed")  # fmt: skip
    assert sorted(s["event_id"] for s in shadow) == sorted(wanted)
    assert {s["model"]["version"] for s in shadow} == {v2.version}
    # Its scores are the challenger's own.
    spec = TransactionsDomain()
    values = [tx_bytes(int(s["event_id"][3:])) for s in shadow]
    rows = spec.to_rows(spec.validate_batch(values).events)
    want = model_v2.pipeline.predict_proba(rows)[:, 1]
    assert np.allclose([s["score"] for s in shadow], want, rtol=1e-6, atol=1e-9)
    sent = running.worker.metrics.registry.get_sample_value(
        "inferloop_worker_shadow_records_total", {"domain": DOMAIN, "outcome": "sent"}
    )
    assert sent == len(wanted)
    assert running.worker.metrics.registry.get_sample_value(
        "inferloop_worker_challenger_version", {"domain": DOMAIN}
    ) == float(v2.version)


def test_exactly_once_shadow_records_are_visible_only_once_committed(
    *,
    wsettings: Settings,
    topics: DomainTopics,
    registry: Registry,
    champion: Champion,
    model_v1: Fitted,
    model_v2: Fitted,
    worker_process: Callable[..., WorkerProcess],
    worker_thread: Callable[..., WorkerThread],
) -> None:
    n = 1000
    settings = with_worker(wsettings, delivery="exactly-once")
    champion(model_v1)
    make_challenger(registry, register(registry, model_v2))
    publish_events(settings, topics.events, range(n))

    crashing = worker_process(with_worker(settings, fault="before_commit:kill:2"))
    assert crashing.wait(120) == -signal.SIGKILL, crashing.log()
    worker_thread(settings, limits=RunLimits(idle_timeout_s=3)).join(120)

    committed_records = shadow_records(settings, topics.shadow, isolation_level="read_committed")
    committed = [s["event_id"] for s in committed_records]
    everything = [s["event_id"] for s in shadow_records(settings, topics.shadow)]
    assert sorted(committed) == sorted(f"tx-{i}" for i in range(n))
    # The killed transaction wrote shadow records too; aborted, only read_uncommitted sees them.
    assert duplicates(everything)
    assert len(everything) > len(committed)


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_promote_challenger_mid_stream_swaps_champion_and_challenger_together(
    *,
    delivery: str,
    wsettings: Settings,
    topics: DomainTopics,
    registry: Registry,
    champion: Champion,
    model_v1: Fitted,
    model_v2: Fitted,
    worker_thread: Callable[..., WorkerThread],
) -> None:
    settings = with_worker(wsettings, delivery=delivery, max_batch_size=20)
    v1 = champion(model_v1)
    v2 = register(registry, model_v2)
    make_challenger(registry, v2)
    running = worker_thread(settings)
    publish_events(settings, topics.events, range(400))
    predictions(settings, topics.predictions, expect=200)
    registry.promote_challenger(DOMAIN, reason="test")
    publish_events(settings, topics.events, range(400, 800))
    wait_for(lambda: running.worker.health.model_version == v2.version, 30, "the swap")
    publish_events(settings, topics.events, range(800, 1000))
    out = predictions(settings, topics.predictions, expect=1000)
    running.stop()

    shadow = {
        s["event_id"]: s
        for s in shadow_records(settings, topics.shadow, isolation_level="read_committed")
    }
    by_version = {p.model.version: 0 for p in out}
    for p in out:
        by_version[p.model.version] += 1
        twin = shadow.get(p.event_id)
        if p.model.version == v1.version:
            # Scored by the old champion: the challenger beside it, in the same batch.
            assert twin is not None, p.event_id
            assert twin["model"]["version"] == v2.version
            assert twin["predicted_at"] == p.predicted_at.isoformat()
        else:
            # Scored by the new champion: no challenger left, so no shadow.
            assert p.model.version == v2.version
            assert twin is None or twin["predicted_at"] != p.predicted_at.isoformat()
    assert by_version[v1.version] >= 200
    assert by_version[v2.version] >= 200
    assert {s["model"]["version"] for s in shadow.values()} == {v2.version}
    assert (
        running.worker.metrics.registry.get_sample_value(
            "inferloop_worker_challenger_version", {"domain": DOMAIN}
        )
        == 0.0
    )


class NoMetadata:
    """A producer that cannot send to the shadow topic (its metadata never comes)."""

    def partitions_for(self, topic: str) -> set[int]:
        raise KafkaTimeoutError(f"no metadata for {topic}")


@pytest.mark.parametrize("in_transaction", [False, True])
def test_a_failed_shadow_send_is_counted_at_least_once_and_fails_the_transaction_otherwise(
    *, in_transaction: bool
) -> None:
    metrics = WorkerMetrics(DOMAIN)
    out = ShadowOutput("transactions.shadow", 1.0, in_transaction, metrics)
    records = ShadowRecords(out, 2, [b"tx-1", b"tx-2"], [b"{}", b"{}"])
    producer: Any = NoMetadata()
    if in_transaction:
        with pytest.raises(KafkaTimeoutError):
            records.send(producer, KafkaInternals(()))
        return
    assert records.send(producer, KafkaInternals(())) == []
    failed = metrics.registry.get_sample_value(
        "inferloop_worker_shadow_records_total", {"domain": DOMAIN, "outcome": "failed"}
    )
    assert failed == 2


class OnePartition:
    """A producer of one partition whose sends are settled by the test (one future each)."""

    def __init__(self) -> None:
        self.futures: list[Future] = []

    def partitions_for(self, topic: str) -> set[int]:
        return {0}

    def send(self, topic: str, *, value: bytes, key: bytes, partition: int) -> Future:
        self.futures.append(Future())
        return self.futures[-1]


def test_each_shadow_record_is_counted_by_its_own_outcome_not_its_partitions_last() -> None:
    # A producer that is not idempotent can fail the first producer batch of a
    # partition and send the next one: the records of the failed one count as failed.
    metrics = WorkerMetrics(DOMAIN)
    out = ShadowOutput("transactions.shadow", 1.0, False, metrics)
    records = ShadowRecords(out, 2, [b"tx-1", b"tx-2", b"tx-3"], [b"{}"] * 3)
    producer = OnePartition()
    assert records.send(cast(Any, producer), KafkaInternals(())) == []
    first, second, last = producer.futures
    first.failure(KafkaTimeoutError("expired in the accumulator"))
    second.failure(KafkaTimeoutError("expired in the accumulator"))
    last.success(None)

    def count(outcome: str) -> float | None:
        return metrics.registry.get_sample_value(
            "inferloop_worker_shadow_records_total", {"domain": DOMAIN, "outcome": outcome}
        )

    assert (count("failed"), count("sent")) == (2, 1)


def test_the_sample_is_stable_per_id_and_near_its_share() -> None:
    ids = [f"tx-{i}" for i in range(10_000)]
    half = set(sampled_indices(ids, 0.5).tolist())
    backwards = ids[::-1]
    # The same ids whatever the batch they come in and their place in it.
    assert {backwards[i] for i in sampled_indices(backwards, 0.5).tolist()} == {
        ids[i] for i in half
    }
    assert 4_700 < len(half) < 5_300
    assert set(sampled_indices(ids, 0.1).tolist()) <= half
    assert sampled_indices(ids, 0.0).size == 0
    assert sampled_indices(ids, 1.0).size == len(ids)


def test_a_challenger_that_fails_verification_is_refused_and_the_champion_serves_alone(
    *,
    wsettings: Settings,
    topics: DomainTopics,
    registry: Registry,
    champion: Champion,
    model_v1: Fitted,
    model_v2: Fitted,
    tmp_path: Path,
    worker_thread: Callable[..., WorkerThread],
) -> None:
    v1 = champion(model_v1)
    running = worker_thread(wsettings)
    publish_events(wsettings, topics.events, range(100))
    predictions(wsettings, topics.predictions, expect=100)
    # A challenger signed by a key this worker does not trust; set_alias cannot verify
    # it either, so it is written as an operator with write access could.
    with untrusted_registry(wsettings, tmp_path) as other:
        bad = register(other, model_v2)
    target = AliasTarget(bad.version, bad.artifact_digest).encode()
    registry.client.hset(registry.keys.aliases(DOMAIN), "challenger", target)
    wait_for(lambda: bad.version in running.worker.health.refused_versions, 30, "the refusal")
    publish_events(wsettings, topics.events, range(100, 200))
    out = predictions(wsettings, topics.predictions, expect=200)
    running.stop()

    assert {p.model.version for p in out} == {v1.version}
    assert running.worker.health.degraded_reason is None
    assert read_topic(wsettings, topics.shadow) == []
    assert (
        running.worker.metrics.registry.get_sample_value(
            "inferloop_worker_challenger_version", {"domain": DOMAIN}
        )
        == 0.0
    )


def counted(running: WorkerThread, counter: str, **labels: str) -> float:
    """The worker's ``inferloop_worker_<counter>_total`` of ``labels`` (0 if absent)."""
    value = running.worker.metrics.registry.get_sample_value(
        f"inferloop_worker_{counter}_total", {"domain": DOMAIN, **labels}
    )
    return value or 0.0


def assert_scores(out: list[Prediction], fitted: Fitted, n: int) -> None:
    """Each of the events 0..n-1 predicted with ``fitted``'s own score."""
    spec = TransactionsDomain()
    by_id = {p.event_id: p.score for p in out}
    rows = spec.to_rows(spec.validate_batch([tx_bytes(i) for i in range(n)]).events)
    want = fitted.pipeline.predict_proba(rows)[:, 1]
    assert np.allclose([by_id[f"tx-{i}"] for i in range(n)], want, rtol=1e-6, atol=1e-9)


def quick_failures(settings: Settings) -> Settings:
    """A send that cannot be delivered fails within about 15 s (flush timeout included)."""
    kafka = settings.kafka.model_copy(update={"request_timeout_ms": 10_000})
    return with_worker(settings.model_copy(update={"kafka": kafka}), max_poll_interval_ms=20_000)


@pytest.mark.parametrize(
    ("delivery", "when"),
    [("at-least-once", "between"), ("exactly-once", "between"), ("exactly-once", "racing")],
)
def test_a_deleted_shadow_topic_never_holds_up_predictions_and_shadow_comes_back_with_it(
    *,
    delivery: str,
    when: str,
    wsettings: Settings,
    topics: DomainTopics,
    registry: Registry,
    champion: Champion,
    model_v1: Fitted,
    model_v2: Fitted,
    worker_thread: Callable[..., WorkerThread],
) -> None:
    n, first = 1000, 200
    settings = quick_failures(with_worker(wsettings, delivery=delivery, max_batch_size=50))
    v1 = champion(model_v1)
    v2 = register(registry, model_v2)
    make_challenger(registry, v2)
    running = worker_thread(settings)
    publish_events(settings, topics.events, range(first))
    predictions(settings, topics.predictions, expect=first)

    def shadow(outcome: str) -> float:
        return counted(running, "shadow_records", outcome=outcome)

    def errors(kind: str) -> float:
        return counted(running, "errors", kind=kind)

    wait_for(lambda: shadow("sent") == first, 30, "the first shadow records")
    if when == "racing":  # deleted while batches with shadow records are in flight
        publish_events(settings, topics.events, range(first, n))
    with admin_client(settings.kafka) as admin:
        admin.delete_topics([topics.shadow])
    began = time.monotonic()
    if when == "between":
        time.sleep(SHADOW_CHECK_S + 0.5)  # the next batch looks the topic up
        publish_events(settings, topics.events, range(first, n))
    # Kafka-python 3.0.12's idempotent producer, shared, did not send the next
    # predictions within 60 s of the deletion under at-least-once; under exactly-once
    # every transaction with shadow records failed, and the batch read again did the same.
    out = predictions(settings, topics.predictions, expect=n, timeout_s=60)
    took_s = time.monotonic() - began

    # None lost (none twice under exactly-once), every one the champion's own score.
    ids = [p.event_id for p in out]
    assert sorted(set(ids)) == sorted(f"tx-{i}" for i in range(n))
    if delivery == "exactly-once":
        assert not duplicates(ids)
    assert {p.model.version for p in out} == {v1.version}
    assert_scores(out, model_v1, n)
    # The shadow records of the later events are lost, and counted (a record of an
    # aborted transaction counts as sent when acknowledged, and again once read again).
    assert shadow("failed") > 0
    assert when == "racing" or shadow("sent") + shadow("failed") <= n
    if delivery == "at-least-once":
        assert took_s < 30
    elif when == "between":
        # Found missing before any transaction carried a shadow record to it.
        assert (errors("shadow_topic_missing"), errors("transaction_abort")) == (1, 0)
        assert took_s < 30
    else:
        # At most the transaction in flight fails (after the flush timeout), never a loop.
        assert errors("shadow_topic_missing") == 1
        assert errors("transaction_abort") <= 1

    # The topic back: shadow records are written again after the pause (looked up by
    # the next batch then).
    create_domain_topics(settings, DOMAIN)
    more = iter(range(n, n + 100_000))

    def shadowed_again() -> bool:
        publish_events(settings, topics.events, [next(more) for _ in range(10)])
        back = shadow_records(settings, topics.shadow, isolation_level="read_committed")
        return any(int(s["event_id"][3:]) >= n for s in back)

    wait_for(shadowed_again, 60, "shadow records of new events after the topic came back")
    running.stop()
    back = shadow_records(settings, topics.shadow, isolation_level="read_committed")
    assert {s["model"]["version"] for s in back} == {v2.version}
    if delivery == "exactly-once":  # best effort: late records may land in the new topic
        assert all(int(s["event_id"][3:]) >= n for s in back)
    assert errors("shadow_topic_missing") <= 1


def test_the_best_effort_producer_stands_aside_after_a_failure_then_tries_again() -> None:
    metrics = WorkerMetrics(DOMAIN)
    now = [0.0]
    made: list[NoMetadata] = []

    def factory() -> Any:
        made.append(NoMetadata())
        return made[-1]

    own = BestEffortProducer(factory, lambda _producer, _timeout_s: None, pause_s=10.0,
                             clock=lambda: now[0])  # fmt: skip
    out = ShadowOutput("transactions.shadow", 1.0, False, metrics, own)
    records = ShadowRecords(out, 2, [b"tx-1", b"tx-2"], [b"{}", b"{}"])
    batch_producer: Any = object()  # never used: the records have a producer of their own

    def failed() -> float | None:
        return metrics.registry.get_sample_value(
            "inferloop_worker_shadow_records_total", {"domain": DOMAIN, "outcome": "failed"}
        )

    assert records.send(batch_producer, KafkaInternals(())) == []  # no metadata: fails
    assert failed() == 2
    now[0] = 9.0  # standing aside: dropped and counted, no send tried
    assert own.get() is None
    assert records.send(batch_producer, KafkaInternals(())) == []
    assert failed() == 4
    now[0] = 10.5  # tries again, with the same producer
    assert records.send(batch_producer, KafkaInternals(())) == []
    assert failed() == 6
    assert len(made) == 1


def test_the_shadow_gate_looks_the_topic_up_when_due_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = WorkerMetrics(DOMAIN)
    now, lookups = [0.0], [0]
    there: list[bool | None] = [True]

    def exists() -> bool:
        lookups[0] += 1
        if there[0] is None:
            raise KafkaTimeoutError("no answer")
        return bool(there[0])

    gate = ShadowGate("transactions.shadow", exists, metrics, 1.0, check_s=1.0, pause_s=10.0,
                      clock=lambda: now[0])  # fmt: skip

    def missing() -> float | None:
        return metrics.registry.get_sample_value(
            "inferloop_worker_errors_total", {"domain": DOMAIN, "kind": "shadow_topic_missing"}
        )

    assert gate.open()
    assert gate.open()  # within the check interval: not looked up again
    assert lookups[0] == 1
    there[0] = False
    now[0] = 0.5
    assert gate.open()  # not due yet
    gate.recheck()  # a transaction failed: looked up at once
    assert not gate.open()
    gate.dropped([b"tx-1", b"tx-2", None])  # a batch unshadowed: its sampled ids counted
    now[0] = 9.0
    assert not gate.open()
    assert (lookups[0], missing()) == (2, 1)
    assert [r.levelname for r in caplog.records if "missing" in r.getMessage()] == ["WARNING"]
    failed = metrics.registry.get_sample_value(
        "inferloop_worker_shadow_records_total", {"domain": DOMAIN, "outcome": "failed"}
    )
    assert failed == 2
    there[0] = None  # the broker does not answer: the gate keeps what it knew
    now[0] = 10.6
    assert not gate.open()
    there[0] = True
    now[0] = 21.0
    assert gate.open()
    assert (lookups[0], missing()) == (4, 1)
