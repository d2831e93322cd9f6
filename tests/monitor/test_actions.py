"""The policy's actions carried out against the real registry and trigger stream: a
rollback or a challenger's promotion never overrides an operator's move (the registry's
compare-and-set holds), a promoted challenger loses its alias, a trigger id is sent
once, and Redis down during an action is an outcome, decided again next time. What the
policy decided is kept with its time and figures: a probation loss under alarm-only as
"would roll back", a floor alarm once while it lasts (across a restart), then cleared."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from inferloop.connections import make_redis
from inferloop.keys import Keys
from inferloop.local.process import free_port
from inferloop.monitor.decisions import Decisions, Executor
from inferloop.monitor.figures import Figures, Interval
from inferloop.monitor.metrics import MonitorMetrics
from inferloop.monitor.paired import PairedCounts
from inferloop.monitor.policy import (
    Action,
    Comparison,
    PromoteChallenger,
    RetireChallenger,
    Rollback,
    Snapshot,
    TriggerRetrain,
)
from inferloop.monitor.scoring import on_probation_from
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

    assert outcome == "stale"
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


def with_challenger(registry: Registry, version: int) -> None:
    registry.set_alias(DOMAIN, "challenger", version, expected_current=None, reason="shadow")


def register(registry: Registry, fitted: Fitted) -> int:
    return registry.register(
        DOMAIN, fitted.pipeline, domain=DOMAIN, threshold=fitted.threshold,
        input_schema_version=1, golden_events=[tx_event(900_000 + i) for i in range(8)],
        params={}, metrics={}, champion_metrics=None, lineage={"source": "pytest"},
        created_by="pytest",
    ).version  # fmt: skip


def test_a_challenger_promoted_by_the_monitor_loses_its_alias_and_can_be_rolled_back(
    *, executor: Executor, registry: Registry, champion: Champion, model_v1: Fitted
) -> None:
    first = champion(model_v1)
    second = register(registry, Fitted(model_v1.pipeline, 0.9))
    with_challenger(registry, second)

    promoted = executor.run([PromoteChallenger(second, first.version, {"outcome": "win"})])

    assert promoted[0]["outcome"] == "done"
    model = registry.get_model(DOMAIN)
    assert model.aliases == {"champion": registry.get_version(DOMAIN, second).target}
    assert registry.history(DOMAIN, limit=1)[0].action == "promote_challenger"
    # Its probation may end in a rollback: refused before while it was also the challenger.
    rolled = executor.run([rollback_of(second, first.version)])
    assert rolled[0]["outcome"] == "done"
    assert registry.resolve(DOMAIN) == first.target
    assert registry.get_version(DOMAIN, second).status == "rolled_back"


def test_a_challenger_promotion_about_another_challenger_is_stale(
    *, executor: Executor, registry: Registry, champion: Champion, model_v1: Fitted
) -> None:
    first = champion(model_v1)
    second = register(registry, Fitted(model_v1.pipeline, 0.9))
    third = register(registry, Fitted(model_v1.pipeline, 0.8))
    with_challenger(registry, third)  # the operator replaced the one the evidence is about

    done = executor.run([PromoteChallenger(second, first.version, {"outcome": "win"})])

    assert done[0]["outcome"] == "stale"
    assert registry.resolve(DOMAIN) == first.target
    assert registry.resolve(DOMAIN, "challenger") == registry.get_version(DOMAIN, third).target


def test_a_retired_challenger_loses_its_alias_and_a_moved_one_is_kept(
    *, executor: Executor, registry: Registry, champion: Champion, model_v1: Fitted
) -> None:
    first = champion(model_v1)
    second = register(registry, Fitted(model_v1.pipeline, 0.9))
    third = register(registry, Fitted(model_v1.pipeline, 0.8))
    with_challenger(registry, second)

    retired = executor.run([RetireChallenger(second, "loses", {"outcome": "loss"})])

    assert retired[0]["outcome"] == "done"
    assert registry.get_model(DOMAIN).aliases == {"champion": first.target}
    assert registry.get_version(DOMAIN, second).status == "candidate"
    with_challenger(registry, third)
    assert executor.run([RetireChallenger(second, "x", {})])[0]["outcome"] == "stale"
    assert registry.resolve(DOMAIN, "challenger") == registry.get_version(DOMAIN, third).target


def test_a_rollback_whose_target_moved_is_stale(
    *, executor: Executor, registry: Registry, champion: Champion, model_v1: Fitted
) -> None:
    first = champion(model_v1)
    second = champion(Fitted(model_v1.pipeline, 0.9))
    third = champion(Fitted(model_v1.pipeline, 0.8))

    # The evidence compared v3 with v1; the rollback target is v2 now.
    done = executor.run([rollback_of(third.version, first.version)])

    assert done[0]["outcome"] == "stale"
    assert registry.resolve(DOMAIN) == third.target
    assert registry.get_version(DOMAIN, second.version).status == "archived"


@pytest.fixture
def dead_executor(msettings: Settings) -> Iterator[Executor]:
    """An executor whose Redis (registry and client) is down."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    section = msettings.redis.model_copy(update={"url": url, "connect_timeout_s": 0.5})
    dead = msettings.model_copy(update={"redis": section})
    registry, client = Registry.from_settings(dead), make_redis(dead.redis)
    yield Executor(DOMAIN, registry, client, Keys(dead.redis.key_prefix), MonitorMetrics())
    client.close()
    registry.close()


def test_redis_down_during_an_action_is_an_outcome_and_the_action_is_decided_again(
    *, dead_executor: Executor, msettings: Settings
) -> None:
    actions: list[Action] = [
        rollback_of(2, 1),
        PromoteChallenger(3, 2, {}),
        RetireChallenger(3, "x", {}),
        TriggerRetrain("floor", "monitor-transactions-floor-1", dedupe_s=60.0),
    ]
    assert [a["outcome"] for a in dead_executor.run(actions)] == ["unreachable"] * 4

    decisions = Decisions(DOMAIN, msettings.monitor, {}, MonitorMetrics())
    losing = PairedCounts(100, 500, pos_new_wrong=60)
    snapshot = Snapshot(0.0, champion=2, probation=Comparison(2, 1, losing))
    for _ in range(2):  # not done: decided again at the next evaluation
        done = decisions.decide(snapshot, dead_executor)
        assert [(a["action"], a["outcome"]) for a in done if a["action"] == "Rollback"] == [
            ("Rollback", "unreachable")
        ]


def test_a_challenger_promoted_by_the_registry_starts_a_probation(
    *, registry: Registry, champion: Champion, model_v1: Fitted
) -> None:
    first = champion(model_v1)
    second = register(registry, Fitted(model_v1.pipeline, 0.9))
    with_challenger(registry, second)
    entry = registry.promote_challenger(DOMAIN, reason="better in shadow", expected_champion=1)
    assert entry.to_target is not None

    assert on_probation_from(registry, DOMAIN, entry.to_target, 3600.0) == first.target
    registry.rollback(DOMAIN, "worse")  # a rollback returns to a version that served: none
    assert on_probation_from(registry, DOMAIN, first.target, 3600.0) is None


LOSING = PairedCounts(100, 500, pos_new_wrong=60)


def test_alarm_only_keeps_a_probation_loss_as_would_roll_back_and_moves_nothing(
    *, msettings: Settings, executor: Executor, registry: Registry, champion: Champion,
    model_v1: Fitted,
) -> None:  # fmt: skip
    first = champion(model_v1)
    second = champion(Fitted(model_v1.pipeline, 0.9))
    section = msettings.monitor.model_copy(update={"transactions_alarm_only": True})
    decisions = Decisions(DOMAIN, section, {}, MonitorMetrics())
    probation = Comparison(second.version, first.version, LOSING)
    snapshot = Snapshot(1000.0, champion=second.version, probation=probation)

    done = decisions.decide(snapshot, executor)

    assert [(a["action"], a["kind"]) for a in done] == [("Alarm", "probation-loss")]
    assert registry.resolve(DOMAIN) == second.target
    (kept,) = decisions.take_kept()
    assert (kept.kind, kept.outcome, kept.at_s) == ("probation-loss", "would-roll-back", 1000.0)
    assert (kept.champion, kept.version, kept.other) == (second.version, second.version,
                                                         first.version)  # fmt: skip
    assert kept.figure == "e_loss"
    assert kept.value is not None
    assert kept.threshold == 1 / section.paired_alpha
    assert kept.value >= kept.threshold
    assert kept.labelled == LOSING.positives + LOSING.negatives
    assert kept.evidence["pos_new_wrong"] == 60
    assert decisions.take_kept() == []  # taken once, to be stored once
    assert decisions.kept_status()[0] == kept.as_status()


def figures(fraud_recall: float) -> Figures:
    """Live figures of a transactions champion: its fraud recall tightly around a value."""
    ok = Interval(0.9, 0.85, 0.95)
    recall = Interval(fraud_recall, fraud_recall - 0.02, fraud_recall + 0.02)
    return Figures(n=2000, positives=120, flagged=60, threshold=0.5, target="fraud_recall",
                   precision=ok, recall=recall, f1=ok, target_value=recall, auprc=ok,
                   block_size=1, n_boot=20)  # fmt: skip


def test_a_floor_alarm_is_kept_once_while_it_lasts_across_a_restart_then_cleared(
    *, msettings: Settings, executor: Executor, champion: Champion, model_v1: Fitted
) -> None:
    v1 = champion(model_v1)
    section = msettings.monitor
    floor = section.transactions_live_floor_fraud_recall

    def evaluate(decisions: Decisions, at_s: float, recall: float) -> list[str]:
        snapshot = Snapshot(at_s, champion=v1.version, champion_figures=figures(recall),
                            champion_labelled=2000)  # fmt: skip
        decisions.decide(snapshot, executor)
        return [k.kind for k in decisions.take_kept()]

    decisions = Decisions(DOMAIN, section, {}, MonitorMetrics())
    assert evaluate(decisions, 1000.0, 0.2) == ["floor", "retrain-trigger"]
    first = decisions.kept[0]
    assert (first.figure, first.value, first.threshold) == ("target_value", 0.2, floor)
    assert first.evidence["high"] == 0.22
    trigger = decisions.kept[1]
    assert (trigger.outcome, trigger.figure, trigger.labelled) == ("sent", "target_value", 2000)
    assert evaluate(decisions, 1010.0, 0.25) == []  # still below: raised, not kept again
    # A restarted monitor reads the kept records back: the alarm is still open.
    restarted = Decisions(DOMAIN, section, {"policy": decisions.policy.to_state()},
                          MonitorMetrics(), decisions.kept)  # fmt: skip
    assert evaluate(restarted, 1020.0, 0.2) == []
    assert evaluate(restarted, 1030.0, 0.8) == ["floor-cleared"]
    assert restarted.kept[-1].version == v1.version
    assert evaluate(restarted, 1040.0, 0.2) == ["floor"]  # a new breach is kept again
