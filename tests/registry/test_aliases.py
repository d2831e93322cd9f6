"""Aliases: compare-and-set moves, the retrain lock guard, rollback, history, races."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest
import redis

from inferloop.keys import Keys
from inferloop.registry import (
    AliasNotFoundError,
    AliasTarget,
    InvalidNameError,
    LockGuard,
    LockLostError,
    ModelVersion,
    NoPreviousChampionError,
    PromotionConflictError,
    Registry,
    ReservedAliasError,
    VersionStateError,
)
from inferloop.settings import Settings
from tests.registry.factories import Register, Trained, train_transactions


@pytest.fixture
def three(register: Register, tx_model: Trained) -> list[ModelVersion]:
    """Three candidate versions of ``transactions``, three different artifacts."""
    return [register(tx_model)] + [register(train_transactions(seed=i)) for i in (1, 2)]


def test_a_first_promotion_sets_the_champion_and_records_who_and_why(
    registry: Registry, three: list[ModelVersion]
) -> None:
    entry = registry.promote("transactions", 1, expected_current=None, reason="first model")

    assert registry.resolve("transactions") == three[0].target
    assert registry.get_version("transactions", 1).status == "champion"
    assert registry.get_version("transactions", 1).aliases == ("champion",)
    (recorded,) = registry.history("transactions")
    assert recorded == entry
    assert (recorded.action, recorded.alias, recorded.from_target, recorded.to_target) == (
        "promote", "champion", None, three[0].target,
    )  # fmt: skip
    assert (recorded.actor, recorded.user, recorded.reason) == ("pytest", "default", "first model")


def test_a_promotion_from_the_wrong_place_is_refused_and_changes_nothing(
    registry: Registry, three: list[ModelVersion]
) -> None:
    registry.promote("transactions", 1, expected_current=None, reason="first")
    stale = [None, 2, AliasTarget(1, "0" * 64)]
    for expected in stale:
        with pytest.raises(PromotionConflictError, match="another move came first"):
            registry.promote("transactions", 3, expected_current=expected, reason="late")

    assert registry.resolve("transactions") == three[0].target
    assert len(registry.history("transactions")) == 1
    assert registry.get_version("transactions", 3).status == "candidate"


def test_the_current_champion_can_be_expected_by_number_or_by_number_and_digest(
    registry: Registry, three: list[ModelVersion]
) -> None:
    registry.promote("transactions", 1, expected_current=None, reason="first")
    registry.promote("transactions", 2, expected_current=1, reason="better")
    entry = registry.promote("transactions", 3, expected_current=three[1].target, reason="best")

    assert entry.from_target == three[1].target
    assert registry.resolve("transactions") == three[2].target
    statuses = [v.status for v in registry.list_versions("transactions")]
    assert statuses == ["archived", "archived", "champion"]


def test_a_promotion_naming_another_digest_is_refused(
    registry: Registry, three: list[ModelVersion]
) -> None:
    with pytest.raises(VersionStateError, match="digest"):
        registry.promote(
            "transactions", 1, expected_current=None, reason="x", digest=three[1].artifact_digest
        )
    assert registry.resolve("transactions") is None


def test_the_retrain_lock_guard_is_checked_in_the_same_step(
    registry: Registry, redis_client: redis.Redis, three: list[ModelVersion]
) -> None:
    lock = Keys(registry.keys.prefix).retrain_lock("transactions")
    redis_client.set(lock, "token-a", px=60_000)
    registry.promote(
        "transactions", 1, expected_current=None, reason="ok", guard=LockGuard(lock, "token-a")
    )
    with pytest.raises(LockLostError):
        registry.promote(
            "transactions", 2, expected_current=1, reason="x", guard=LockGuard(lock, "token-b")
        )
    redis_client.delete(lock)  # the lease ran out
    with pytest.raises(LockLostError):
        registry.promote(
            "transactions", 2, expected_current=1, reason="x", guard=LockGuard(lock, "token-a")
        )
    assert registry.resolve("transactions") == three[0].target
    assert len(registry.history("transactions")) == 1


@pytest.mark.parametrize("alias", ["latest", "v3", "3", "V12"])
def test_reserved_alias_names_are_refused(
    registry: Registry, three: list[ModelVersion], alias: str
) -> None:
    with pytest.raises(ReservedAliasError):
        registry.set_alias("transactions", alias, 1, expected_current=None, reason="x")
    with pytest.raises(ReservedAliasError):
        registry.resolve("transactions", alias)


@pytest.mark.parametrize("alias", ["Champion", "a b", "", "x" * 65])
def test_malformed_alias_names_are_refused(
    registry: Registry, three: list[ModelVersion], alias: str
) -> None:
    with pytest.raises(InvalidNameError):
        registry.set_alias("transactions", alias, 1, expected_current=None, reason="x")


def test_a_challenger_alias_moves_and_is_removed_without_touching_statuses(
    registry: Registry, three: list[ModelVersion]
) -> None:
    registry.set_alias("transactions", "challenger", 2, expected_current=None, reason="shadow")
    assert registry.resolve("transactions", "challenger") == three[1].target
    assert registry.get_version("transactions", 2).status == "candidate"
    assert registry.get_model("transactions").aliases == {"challenger": three[1].target}

    registry.remove_alias("transactions", "challenger", expected_current=2, reason="done")
    assert registry.resolve("transactions", "challenger") is None
    with pytest.raises(AliasNotFoundError):
        registry.remove_alias("transactions", "challenger", expected_current=None, reason="x")
    with pytest.raises(VersionStateError, match="roll back"):
        registry.remove_alias("transactions", "champion", expected_current=None, reason="x")
    assert [e.action for e in registry.history("transactions")] == ["remove_alias", "set_alias"]


def test_a_rejected_version_cannot_be_promoted_and_an_aliased_one_cannot_be_rejected(
    registry: Registry, three: list[ModelVersion]
) -> None:
    entry = registry.reject("transactions", 2, "worse than the champion")
    assert entry is not None
    assert (entry.action, entry.version, entry.reason) == ("reject", 2, "worse than the champion")
    assert registry.get_version("transactions", 2).status == "rejected"
    assert registry.reject("transactions", 2, "again") is None
    with pytest.raises(VersionStateError, match="rejected"):
        registry.promote("transactions", 2, expected_current=None, reason="x")

    registry.promote("transactions", 1, expected_current=None, reason="first")
    with pytest.raises(VersionStateError, match="champion"):
        registry.reject("transactions", 1, "x")


def test_rollback_walks_back_through_previous_champions(
    registry: Registry, three: list[ModelVersion]
) -> None:
    registry.promote("transactions", 1, expected_current=None, reason="a")
    registry.promote("transactions", 2, expected_current=1, reason="b")
    registry.promote("transactions", 3, expected_current=2, reason="c")

    entry = registry.rollback("transactions", "v3 misbehaves")
    assert (entry.from_target, entry.to_target) == (three[2].target, three[1].target)
    assert registry.resolve("transactions") == three[1].target
    assert registry.get_version("transactions", 3).status == "rolled_back"
    registry.rollback("transactions", "v2 too")
    assert registry.get_version("transactions", 2).status == "rolled_back"
    assert registry.resolve("transactions") == three[0].target
    with pytest.raises(NoPreviousChampionError):
        registry.rollback("transactions", "nothing left")

    history = registry.history("transactions")
    assert [(e.action, e.from_target, e.to_target) for e in history] == [
        ("rollback", three[1].target, three[0].target),
        ("rollback", three[2].target, three[1].target),
        ("promote", three[1].target, three[2].target),
        ("promote", three[0].target, three[1].target),
        ("promote", None, three[0].target),
    ]


def test_a_rollback_expecting_another_champion_is_refused(
    registry: Registry, three: list[ModelVersion]
) -> None:
    registry.promote("transactions", 1, expected_current=None, reason="a")
    registry.promote("transactions", 2, expected_current=1, reason="b")
    with pytest.raises(PromotionConflictError):
        registry.rollback("transactions", "x", expected_current=3)
    assert registry.resolve("transactions") == three[1].target


def test_a_rollback_expecting_another_target_is_refused(
    registry: Registry, three: list[ModelVersion]
) -> None:
    registry.promote("transactions", 1, expected_current=None, reason="a")
    registry.promote("transactions", 2, expected_current=1, reason="b")
    registry.promote("transactions", 3, expected_current=2, reason="c")
    with pytest.raises(PromotionConflictError, match="the rollback target is v2"):
        registry.rollback("transactions", "x", expected_current=3, expected_previous=1)
    assert registry.resolve("transactions") == three[2].target
    assert registry.get_version("transactions", 3).status == "champion"

    entry = registry.rollback(
        "transactions", "x", expected_current=3, expected_previous=three[1].target
    )
    assert entry.to_target == three[1].target


def test_a_reused_version_number_is_told_apart_by_its_digest(
    registry: Registry,
    redis_client: redis.Redis,
    register: Register,
    three: list[ModelVersion],
) -> None:
    registry.promote("transactions", 2, expected_current=None, reason="a")
    # As after a crash that lost v2 and the counter: v2 is registered again, other bytes.
    keys = registry.keys
    redis_client.delete(keys.version("transactions", 2), keys.artifact("transactions", 2))
    redis_client.zrem(keys.versions("transactions"), 2)
    redis_client.set(keys.version_counter("transactions"), 1)
    reused = register(train_transactions(seed=7, c=0.05))

    assert reused.version == 2
    assert reused.artifact_digest != three[1].artifact_digest
    with pytest.raises(VersionStateError, match="another artifact"):
        registry.load("transactions", 2, digest=three[1].artifact_digest)
    with pytest.raises(PromotionConflictError):
        registry.promote("transactions", 3, expected_current=reused.target, reason="x")


def _race(settings: Settings, version: int, rounds: int, start: Any, results: Any) -> None:
    """In a separate process: each round, wait for the start, then promote ``version``
    over v1 and report whether it won (a winner rolled back is promoted again as
    reviewed)."""
    registry = Registry.from_settings(settings)
    try:
        for round_ in range(rounds):
            start.wait(timeout=120)
            try:
                registry.promote(
                    "transactions",
                    version,
                    expected_current=1,
                    reason=f"race {version}",
                    reviewed=True,
                )
                results.put((round_, version, "won"))
            except PromotionConflictError:
                results.put((round_, version, "lost"))
    finally:
        registry.close()


@pytest.mark.slow
def test_racing_promotions_from_separate_processes_leave_exactly_one_winner(
    registry: Registry, registry_settings: Settings, three: list[ModelVersion]
) -> None:
    registry.promote("transactions", 1, expected_current=None, reason="base")
    context = multiprocessing.get_context("spawn")
    rounds, racers = 5, (2, 3)
    start, results = context.Barrier(len(racers) + 1), context.Queue()
    processes = [
        context.Process(target=_race, args=(registry_settings, v, rounds, start, results))
        for v in racers
    ]
    for process in processes:
        process.start()
    try:
        for round_ in range(rounds):
            if round_:
                registry.rollback("transactions", "back to v1 for the next round")
            start.wait(timeout=120)
            outcomes = [results.get(timeout=60) for _ in racers]
            winners = [v for r, v, outcome in outcomes if r == round_ and outcome == "won"]
            assert len(winners) == 1, outcomes
            assert registry.resolve("transactions") == three[winners[0] - 1].target
            latest = registry.history("transactions", limit=1)[0]
            assert (latest.action, latest.from_target, latest.to_target, latest.reason) == (
                "promote", three[0].target, three[winners[0] - 1].target, f"race {winners[0]}",
            )  # fmt: skip
    finally:
        for process in processes:
            process.join(timeout=60)
    promotions = [e for e in registry.history("transactions") if e.action == "promote"]
    assert len(promotions) == rounds + 1
