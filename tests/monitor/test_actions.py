"""The policy's actions carried out against the real registry and trigger stream: a
rollback never overrides an operator's promotion (the registry's compare-and-set holds),
and a trigger id is sent once."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from inferloop.keys import Keys
from inferloop.monitor.decisions import Executor
from inferloop.monitor.metrics import MonitorMetrics
from inferloop.monitor.policy import Rollback, TriggerRetrain
from inferloop.registry import AliasTarget, Registry
from inferloop.settings import Settings
from tests.worker.conftest import Champion
from tests.worker.factories import Fitted, tx_event

DOMAIN = "transactions"


@pytest.fixture
def executor(msettings: Settings, registry: Registry, redis_client: redis.Redis) -> Executor:
    return Executor(
        DOMAIN, registry, redis_client, Keys(msettings.redis.key_prefix), MonitorMetrics()
    )


def rollback_of(version: int, to_version: int) -> Rollback:
    return Rollback(version, to_version, 60.0, {"decision": "probation", "outcome": "loss"})


def test_a_rollback_decided_before_an_operator_promotion_leaves_the_promotion(
    *, executor: Executor, registry: Registry, champion: Champion, model_v1: Fitted
) -> None:
    first = champion(model_v1)
    second = champion(Fitted(model_v1.pipeline, 0.9))
    # The operator promotes a third version after the monitor decided on the second.
    third = champion(Fitted(model_v1.pipeline, 0.8))

    assert executor.run([rollback_of(second.version, first.version)])[0]["outcome"] == "stale"
    assert registry.resolve(DOMAIN) == third.target


def test_an_operator_promotion_inside_the_rollback_loses_nothing(
    *,
    executor: Executor,
    registry: Registry,
    champion: Champion,
    model_v1: Fitted,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = champion(model_v1)
    second = champion(Fitted(model_v1.pipeline, 0.9))
    third = registry.register(
        DOMAIN, model_v1.pipeline, domain=DOMAIN, threshold=0.8, input_schema_version=1,
        golden_events=[tx_event(900_000 + i) for i in range(8)], params={}, metrics={},
        champion_metrics=None, lineage={"source": "pytest"}, created_by="operator",
    )  # fmt: skip
    real_resolve = registry.resolve
    moved: list[bool] = []

    def resolve_then_operator_moves(name: str, alias: str = "champion") -> AliasTarget | None:
        # The monitor reads the champion (v2); the operator promotes v3 right after.
        seen = real_resolve(name, alias)
        if not moved:
            registry.promote(DOMAIN, third.version, expected_current=seen, reason="operator")
            moved.append(True)
        return seen

    monkeypatch.setattr(registry, "resolve", resolve_then_operator_moves)
    outcome = executor.run([rollback_of(second.version, first.version)])[0]["outcome"]
    monkeypatch.undo()

    assert outcome == "refused"
    assert registry.resolve(DOMAIN) == registry.get_version(DOMAIN, third.version).target
    assert registry.get_version(DOMAIN, second.version).status != "rejected"


def test_a_trigger_id_is_sent_once(
    *, executor: Executor, msettings: Settings, redis_client: redis.Redis
) -> None:
    trigger = TriggerRetrain("floor", "monitor-transactions-floor-1", dedupe_s=60.0)
    outcomes = [a["outcome"] for a in executor.run([trigger, trigger])]

    assert outcomes == ["sent", "duplicate"]
    stream = Keys(msettings.redis.key_prefix).retrain_triggers()
    entries: Any = redis_client.xrange(stream)
    assert len(entries) == 1
    assert entries[0][1][b"trigger_id"] == b"monitor-transactions-floor-1"
