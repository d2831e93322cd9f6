"""Retention keeps the last N artifacts, never an aliased one nor the rollback target,
and leaves tombstones; reports are stored beside a version."""

from __future__ import annotations

import pytest

from inferloop.registry import (
    ArtifactDeletedError,
    InvalidVersionError,
    Registry,
    VersionNotFoundError,
    VersionStateError,
)
from tests.registry.factories import Register, RegistryFactory, train_transactions


def _has_artifact(registry: Registry) -> dict[int, bool]:
    return {v.version: v.has_artifact for v in registry.list_versions("transactions")}


def test_retention_keeps_the_newest_the_aliased_and_the_rollback_target(
    registry_factory: RegistryFactory, register: Register
) -> None:
    registry = registry_factory(keep_versions=2)
    models = [train_transactions(seed=s) for s in range(5)]
    register(models[0], into=registry)
    registry.promote("transactions", 1, expected_current=None, reason="first")
    for model in models[1:4]:
        register(model, into=registry)
    registry.set_alias("transactions", "challenger", 3, expected_current=None, reason="shadow")
    assert _has_artifact(registry) == {1: True, 2: False, 3: True, 4: True}

    registry.promote("transactions", 4, expected_current=1, reason="better")
    register(models[4], into=registry)
    # v1: rollback target; v3: challenger; v4: champion; v5: newest.
    assert _has_artifact(registry) == {1: True, 2: False, 3: True, 4: True, 5: True}
    registry.remove_alias("transactions", "challenger", expected_current=3, reason="done")
    assert registry.apply_retention("transactions") == [3]

    tombstone = registry.get_version("transactions", 2)
    assert tombstone.artifact_deleted_at is not None
    assert (tombstone.status, tombstone.lineage["rows"]) == ("candidate", 300)
    assert registry.verify("transactions", 2).ok
    with pytest.raises(ArtifactDeletedError):
        registry.load("transactions", 2)
    deletions = [e for e in registry.history("transactions") if e.action == "delete"]
    assert [(e.version, e.reason) for e in deletions] == [
        (3, "retention: keep the last 2"),
        (2, "retention: keep the last 2"),
    ]
    registry.rollback("transactions", "v4 misbehaves")
    assert registry.load("transactions", 1).version.version == 1


def test_deleting_an_aliased_version_or_the_rollback_target_is_refused(
    registry: Registry, register: Register
) -> None:
    for seed in range(2):
        register(train_transactions(seed=seed))
    registry.promote("transactions", 1, expected_current=None, reason="a")
    with pytest.raises(VersionStateError, match="champion"):
        registry.delete_version("transactions", 1, reason="x")
    registry.promote("transactions", 2, expected_current=1, reason="b")
    with pytest.raises(VersionStateError, match="rollback target"):
        registry.delete_version("transactions", 1, reason="x")
    with pytest.raises(InvalidVersionError):
        registry.apply_retention("transactions", keep=0)
    assert _has_artifact(registry) == {1: True, 2: True}


def test_reports_are_stored_with_a_version(registry: Registry, register: Register) -> None:
    version = register(train_transactions()).version
    files = {"report.md": b"# v1\n", "pr_curve.png": bytes(range(256))}
    registry.put_report("transactions", version, files)
    registry.put_report("transactions", version, {"report.md": b"# v1, again\n"})

    assert registry.get_report("transactions", version) == {
        "pr_curve.png": bytes(range(256)),
        "report.md": b"# v1, again\n",
    }
    with pytest.raises(VersionNotFoundError):
        registry.put_report("transactions", 9, files)
    for bad in ("../escape", "a/b", "", ".."):
        with pytest.raises(InvalidVersionError):
            registry.put_report("transactions", version, {bad: b"x"})
