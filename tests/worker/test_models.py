"""The champion changes under a running worker: promotions, refusals, Redis outages."""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

from inferloop.domains.schemas import Prediction, TransactionEvent
from inferloop.domains.spec import PipelineScorer, Scorer
from inferloop.domains.transactions import TransactionsDomain
from inferloop.local.redis import LocalRedis
from inferloop.registry import ModelVersion, Registry, RegistryPermissionError
from inferloop.registry.serving import activate
from inferloop.registry.signing import KeyPair
from inferloop.settings import Settings
from inferloop.topics import DomainTopics
from inferloop.worker.health import HealthState
from inferloop.worker.metrics import WorkerMetrics
from inferloop.worker.model import ModelKeeper
from tests.helpers import read_topic, untrusted_registry
from tests.worker.conftest import DOMAIN, Champion, WorkerThread, wait_for, with_worker
from tests.worker.factories import (
    Fitted,
    duplicates,
    predictions,
    publish_events,
    tx_event,
)


def versions_in_input_order(
    settings: Settings, topics: DomainTopics, out: list[Prediction]
) -> dict[int, list[int]]:
    """Per input partition, the versions of the predictions in input offset order."""
    where = {r.key.decode(): (r.partition, r.offset) for r in read_topic(settings, topics.events)}
    by_partition: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for p in out:
        partition, offset = where[p.event_id]
        by_partition[partition].append((offset, p.model.version))
    return {k: [v for _, v in sorted(pairs)] for k, pairs in by_partition.items()}


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
@pytest.mark.shortcuts_off_too
def test_a_promotion_mid_stream_swaps_between_batches_losing_and_repeating_nothing(
    *,
    delivery: str,
    wsettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
    model_v2: Fitted,
    worker_thread: Callable[..., WorkerThread],
) -> None:
    settings = with_worker(wsettings, delivery=delivery, max_batch_size=50)
    v1 = champion(model_v1)
    running = worker_thread(settings)
    publish_events(settings, topics.events, range(600))
    predictions(settings, topics.predictions, expect=300)

    v2 = champion(model_v2)
    publish_events(settings, topics.events, range(600, 900))
    wait_for(lambda: running.worker.health.model_version == v2.version, 30, "the swap")
    publish_events(settings, topics.events, range(900, 1200))
    predictions(settings, topics.predictions, expect=1200)
    summary = running.stop()
    out = predictions(settings, topics.predictions)

    ids = [p.event_id for p in out]
    assert set(ids) == {f"tx-{i}" for i in range(1200)}
    if delivery == "exactly-once":
        assert duplicates(ids) == {}
    assert summary.versions == {v1.version, v2.version}
    for partition, versions in versions_in_input_order(settings, topics, out).items():
        first_v2 = versions.index(v2.version)
        assert v1.version not in versions[first_v2:], f"v1 after v2 in partition {partition}"
    swaps = running.worker.metrics.registry.get_sample_value(
        "inferloop_worker_model_swap_pause_seconds_sum", {"domain": "transactions"}
    )
    print(f"\n{delivery}: swap pause {swaps:.6f} s (reported, not asserted)")


def test_a_version_that_fails_verification_is_refused_and_the_old_one_kept(
    *,
    wsettings: Settings,
    topics: DomainTopics,
    tmp_path: Path,
    champion: Champion,
    model_v1: Fitted,
    model_v2: Fitted,
    worker_thread: Callable[..., WorkerThread],
) -> None:
    v1 = champion(model_v1)
    running = worker_thread(wsettings)
    publish_events(wsettings, topics.events, range(100))
    predictions(wsettings, topics.predictions, expect=100)

    # A champion signed by a key this worker does not trust.
    with untrusted_registry(wsettings, tmp_path) as other:
        bad = other.register(
            "transactions", model_v2.pipeline, domain="transactions", threshold=0.5,
            input_schema_version=1, golden_events=[tx_event(5)], params={}, metrics={},
            champion_metrics=None, lineage={}, created_by="pytest",
        )  # fmt: skip
        other.promote("transactions", bad.version, expected_current=v1.version, reason="test")
    wait_for(lambda: bad.version in running.worker.health.refused_versions, 30, "the refusal")
    publish_events(wsettings, topics.events, range(100, 200))
    out = predictions(wsettings, topics.predictions, expect=200)
    running.stop()

    assert {p.model.version for p in out} == {v1.version}
    assert running.worker.health.model_version == v1.version
    refused = running.worker.metrics.registry.get_sample_value(
        "inferloop_worker_models_refused_total",
        {"domain": "transactions", "version": str(bad.version)},
    )
    assert refused == 1
    # It serves, but not the champion: it says so.
    assert f"keeping v{v1.version}" in (running.worker.health.degraded_reason or "")
    fallback = running.worker.metrics.registry.get_sample_value(
        "inferloop_worker_model_fallback", {"domain": "transactions"}
    )
    assert fallback == 1


def test_redis_down_scoring_goes_on_and_a_later_promotion_is_picked_up(
    *,
    wsettings: Settings,
    topics: DomainTopics,
    keys: KeyPair,
    own_redis: LocalRedis,
    model_v1: Fitted,
    model_v2: Fitted,
    worker_thread: Callable[..., WorkerThread],
) -> None:
    settings = wsettings.model_copy(
        update={"redis": wsettings.redis.model_copy(update={"url": own_redis.url})}
    )
    section = settings.registry.model_copy(update={"signing_key_path": keys.private_path})
    signing = settings.model_copy(update={"registry": section})
    with Registry.from_settings(signing) as registry:
        v1 = register_and_promote(registry, model_v1)
    running = worker_thread(settings)
    publish_events(settings, topics.events, range(100))
    predictions(settings, topics.predictions, expect=100)

    own_redis.stop()
    wait_for(lambda: not running.worker.health.redis_ok, 30, "Redis to be missed")
    publish_events(settings, topics.events, range(100, 300))
    during = predictions(settings, topics.predictions, expect=300)

    own_redis.start(timeout_s=30)
    with Registry.from_settings(signing) as registry:
        v2 = register_and_promote(registry, model_v2)
    wait_for(lambda: running.worker.health.model_version == v2.version, 60, "the swap")
    publish_events(settings, topics.events, range(300, 400))
    after = predictions(settings, topics.predictions, expect=400)
    running.stop()

    assert sorted(p.event_id for p in during) == sorted(f"tx-{i}" for i in range(300))
    assert {p.model.version for p in during} == {v1.version}
    late = {p.event_id: p.model.version for p in after}
    assert {late[f"tx-{i}"] for i in range(300, 400)} == {v2.version}


def register_and_promote(registry: Registry, fitted: Fitted) -> ModelVersion:
    """Register ``fitted`` and make it the champion."""
    version = registry.register(
        "transactions", fitted.pipeline, domain="transactions", threshold=fitted.threshold,
        input_schema_version=1, golden_events=[tx_event(900_000 + i) for i in range(4)],
        params={}, metrics={}, champion_metrics=None, lineage={}, created_by="pytest",
    )  # fmt: skip
    registry.promote("transactions", version.version, expected_current=registry.resolve(
        "transactions"), reason="test")  # fmt: skip
    return version


class OffByALittle:
    """A "compiled form" whose scores are the pipeline's plus 0.001."""

    name = "off by a little"

    def __init__(self, pipeline: Any) -> None:
        self._plain = PipelineScorer(pipeline)

    def __call__(self, rows: Any) -> Any:
        return self._plain(rows) + 1e-3


class DisagreeingTransactions(TransactionsDomain):
    def scorers(self, pipeline: Any) -> list[Scorer]:
        return [OffByALittle(pipeline), PipelineScorer(pipeline)]


def test_a_worker_scores_with_the_compiled_trees_and_passes_over_a_form_that_disagrees(
    *, registry: Registry, champion: Champion, model_v1: Fitted, caplog: pytest.LogCaptureFixture
) -> None:
    version = champion(model_v1)
    loaded = registry.load("transactions", version.version, digest=version.artifact_digest)
    golden = [TransactionEvent.model_validate_json(json.dumps(e)) for e in version.golden.events]

    compiled = activate(loaded, TransactionsDomain())
    assert compiled.scorer.name == "compiled trees (25)"
    assert np.array_equal(compiled.score(golden), np.asarray(version.golden.scores))

    with caplog.at_level(logging.WARNING, logger="inferloop.registry.serving"):
        fallback = activate(loaded, DisagreeingTransactions())
    assert fallback.scorer.name == "pipeline"
    assert "not scoring with off by a little" in caplog.text
    assert np.array_equal(fallback.score(golden), compiled.score(golden))


class ThreadCountingTransactions(TransactionsDomain):
    """Records the OpenMP threads scikit-learn would use wherever a version is activated."""

    def __init__(self) -> None:
        super().__init__()
        self.openmp_threads: list[int] = []

    def scorers(self, pipeline: Any) -> list[Scorer]:
        self.openmp_threads.append(_openmp_effective_n_threads())
        return super().scorers(pipeline)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: every thread gets one")
def test_a_promoted_version_is_checked_in_the_background_on_the_worker_s_scoring_threads(
    *, wsettings: Settings, champion: Champion, model_v1: Fitted, model_v2: Fitted
) -> None:
    settings = with_worker(wsettings, scoring_threads=1)
    spec = ThreadCountingTransactions()
    keeper = ModelKeeper(
        settings, spec, WorkerMetrics(DOMAIN), HealthState(DOMAIN, max_loop_gap_s=30.0)
    )
    champion(model_v1)
    assert keeper.wait_for_champion(lambda: False) is not None
    keeper.start()
    try:
        v2 = champion(model_v2)
        wait_for(lambda: keeper.take_swap() is not None, 30, "the background load of v2")
    finally:
        keeper.stop()
    assert keeper.current is not None
    assert keeper.current.version == v2.version
    # The start-up load ran in the test's thread, the promotion's in the keeper's own:
    # OpenMP's limit is per thread, so the keeper must set its own.
    assert spec.openmp_threads[1:] == [1]


class FlakyRegistry(Registry):
    """The real registry whose loads fail ``failures`` times first with an error that
    may pass (an ACL refusal), as when an operator fixes the worker's Redis user."""

    failures = 0

    def load(self, *args: Any, **kwargs: Any) -> Any:
        if FlakyRegistry.failures > 0:
            FlakyRegistry.failures -= 1
            raise RegistryPermissionError("NOPERM this user has no permissions to run 'get'")
        return super().load(*args, **kwargs)


def flaky_keeper(settings: Settings, failures: int) -> ModelKeeper:
    FlakyRegistry.failures = failures
    return ModelKeeper(
        with_worker(settings, redis_backoff_max_s=0.5, model_check_interval_s=0.2),
        TransactionsDomain(), WorkerMetrics(DOMAIN), HealthState(DOMAIN, max_loop_gap_s=30.0),
        registry_factory=FlakyRegistry.from_settings,
    )  # fmt: skip


def test_a_load_error_that_may_pass_is_retried_not_a_refusal_for_good(
    *, wsettings: Settings, champion: Champion, model_v1: Fitted, model_v2: Fitted
) -> None:
    v1 = champion(model_v1)
    keeper = flaky_keeper(wsettings, failures=2)
    # At start: the champion itself once the error passes, not a fallback, not nothing.
    deadline = time.monotonic() + 30
    model = keeper.wait_for_champion(lambda: time.monotonic() > deadline)
    assert model is not None
    assert model.version == v1.version
    assert keeper._health.degraded_reason is None
    keeper.start()
    try:
        FlakyRegistry.failures = 2
        v2 = champion(model_v2)
        # In the background: the promoted version is taken once its load passes.
        wait_for(lambda: keeper.take_swap() is not None, 30, "the retried load of v2")
    finally:
        keeper.stop()
    assert keeper.current is not None
    assert keeper.current.version == v2.version
    assert keeper._health.refused_versions == []
