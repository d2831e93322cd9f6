"""Every move to a served alias verifies its target first (signature, digest, golden
scores through the domain's scorer) and moves only if the stored digest is still the
verified one; a rolled-back version is marked and promoted again only when reviewed."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from inferloop.cli import cli
from inferloop.registry import (
    AliasNotFoundError,
    DigestMismatchError,
    GoldenMismatchError,
    IntegrityError,
    ModelVersion,
    PromotionConflictError,
    Registry,
    VersionStateError,
)
from inferloop.registry.loader import Loader
from inferloop.registry.manifest import canonical_json
from inferloop.registry.signing import Signer
from inferloop.settings import Settings
from tests.helpers import settings_env
from tests.registry.factories import Register, Trained, train_transactions

NAME = "transactions"


@pytest.fixture
def three(register: Register, tx_model: Trained) -> list[ModelVersion]:
    """Three candidate versions of ``transactions``, three different artifacts."""
    return [register(tx_model)] + [register(train_transactions(seed=i)) for i in (1, 2)]


def flip_a_byte(registry: Registry, client: redis.Redis, version: int) -> None:
    """One bit of the stored artifact flipped, as by anyone with write access to Redis."""
    key = registry.keys.artifact(NAME, version)
    stored: Any = client.get(key)
    data = bytearray(stored)
    data[len(data) // 2] ^= 0x01
    client.set(key, bytes(data))


def shift_golden_scores(
    registry: Registry, client: redis.Redis, version: int, signer: Signer
) -> None:
    """The version's recorded golden scores moved by 0.1, re-signed by the trusted key:
    signature and digest check out, the golden sample does not reproduce."""
    key = registry.keys.version(NAME, version)
    manifest = json.loads(client.hget(key, "manifest") or b"")
    manifest["golden"]["scores"] = [min(1.0, s + 0.1) for s in manifest["golden"]["scores"]]
    data = canonical_json(manifest)
    signature = base64.b64encode(signer.sign(data)).decode()
    client.hset(key, mapping={"manifest": data, "signature": signature, "key_id": signer.key_id})


def test_an_exported_imported_then_tampered_version_is_not_promoted_by_the_cli(
    *,
    registry: Registry,
    registry_settings: Settings,
    redis_client: redis.Redis,
    three: list[ModelVersion],
    tmp_path: Path,
) -> None:
    registry.promote(NAME, 1, expected_current=None, reason="first")
    registry.export_version(NAME, 2, tmp_path / "v2.export")
    imported = registry.import_version(tmp_path / "v2.export")
    flip_a_byte(registry, redis_client, imported.version)
    entries_before = registry.history(NAME)

    result = CliRunner(env=settings_env(registry_settings)).invoke(
        cli, ["registry", "promote", NAME, str(imported.version), "--reason", "looks fine"]
    )

    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert f"refusing {NAME}@champion -> v{imported.version}" in line
    assert "do not match the signed digest" in line
    assert registry.resolve(NAME) == three[0].target
    assert registry.get_version(NAME, imported.version).status == "candidate"
    assert registry.history(NAME) == entries_before


def test_a_version_whose_golden_scores_do_not_reproduce_is_not_promoted(
    *,
    registry: Registry,
    redis_client: redis.Redis,
    three: list[ModelVersion],
    signing_keys: Any,
) -> None:
    registry.promote(NAME, 1, expected_current=None, reason="first")
    shift_golden_scores(registry, redis_client, 2, Signer.from_file(signing_keys.private_path))

    with pytest.raises(GoldenMismatchError, match=f"refusing {NAME}@champion -> v2"):
        registry.promote(NAME, 2, expected_current=1, reason="x")
    assert registry.resolve(NAME) == three[0].target


def test_a_tampered_challenger_is_not_set(
    registry: Registry, redis_client: redis.Redis, three: list[ModelVersion]
) -> None:
    flip_a_byte(registry, redis_client, 3)
    with pytest.raises(DigestMismatchError, match="challenger"):
        registry.set_alias(NAME, "challenger", 3, expected_current=None, reason="shadow it")
    assert registry.resolve(NAME, "challenger") is None


def test_the_move_is_refused_when_the_stored_digest_changed_after_verification(
    *,
    registry: Registry,
    redis_client: redis.Redis,
    three: list[ModelVersion],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry.promote(NAME, 1, expected_current=None, reason="first")
    verify = registry._verified

    def verify_then_swap(name: str, version: int, digest: str | None, what: str) -> str:
        verified = verify(name, version, digest, what)
        # Between the check and the compare-and-set, v2's record now names v3's bytes.
        key = registry.keys.version(NAME, version)
        redis_client.hset(key, "artifact_digest", three[2].artifact_digest)
        return verified

    monkeypatch.setattr(registry, "_verified", verify_then_swap)
    with pytest.raises(VersionStateError, match="has digest"):
        registry.promote(NAME, 2, expected_current=1, reason="x")
    assert registry.resolve(NAME) == three[0].target


def test_a_rollback_to_a_tampered_version_is_refused(
    registry: Registry, redis_client: redis.Redis, three: list[ModelVersion]
) -> None:
    registry.promote(NAME, 1, expected_current=None, reason="a")
    registry.promote(NAME, 2, expected_current=1, reason="b")
    flip_a_byte(registry, redis_client, 1)

    with pytest.raises(DigestMismatchError, match=rf"refusing {NAME}@champion -> v1 \(rollback\)"):
        registry.rollback(NAME, "v2 misbehaves")
    assert registry.resolve(NAME) == three[1].target
    assert registry.get_version(NAME, 2).status == "champion"
    assert [e.action for e in registry.history(NAME)] == ["promote", "promote"]


def test_a_rolled_back_version_is_marked_and_promoted_again_only_when_reviewed(
    registry: Registry, three: list[ModelVersion]
) -> None:
    registry.promote(NAME, 1, expected_current=None, reason="a")
    registry.promote(NAME, 2, expected_current=1, reason="b")
    registry.rollback(NAME, "v2 misbehaves", expected_current=three[1].target)
    assert registry.get_version(NAME, 2).status == "rolled_back"

    with pytest.raises(VersionStateError, match="rolled back"):
        registry.promote(NAME, 2, expected_current=1, reason="try again")
    assert registry.resolve(NAME) == three[0].target

    entry = registry.promote(NAME, 2, expected_current=1, reason="fixed upstream", reviewed=True)
    assert entry.reviewed
    assert registry.resolve(NAME) == three[1].target
    latest, *older = registry.history(NAME)
    assert (latest.action, latest.reviewed, latest.reason) == ("promote", True, "fixed upstream")
    assert not any(e.reviewed for e in older)
    # ``reviewed`` is recorded only when it was needed.
    plain = registry.promote(NAME, 3, expected_current=2, reason="c", reviewed=True)
    assert not plain.reviewed
    assert not registry.history(NAME, limit=1)[0].reviewed


def test_a_rejected_version_is_never_promoted_even_as_reviewed(
    registry: Registry, three: list[ModelVersion]
) -> None:
    registry.reject(NAME, 2, "worse")
    with pytest.raises(VersionStateError, match="rejected"):
        registry.promote(NAME, 2, expected_current=None, reason="x", reviewed=True)
    assert registry.resolve(NAME) is None


def test_promote_challenger_moves_both_aliases_in_one_step(
    registry: Registry, three: list[ModelVersion]
) -> None:
    registry.promote(NAME, 1, expected_current=None, reason="a")
    registry.set_alias(NAME, "challenger", 2, expected_current=None, reason="shadow")

    entry = registry.promote_challenger(NAME, reason="better in shadow", actor="monitor")

    assert (entry.action, entry.from_target, entry.to_target) == (
        "promote_challenger", three[0].target, three[1].target,
    )  # fmt: skip
    assert registry.get_model(NAME).aliases == {"champion": three[1].target}
    assert registry.get_version(NAME, 2).status == "champion"
    assert registry.get_version(NAME, 1).status == "archived"
    assert registry.history(NAME, limit=1)[0] == entry
    # The old champion is the rollback target.
    registry.rollback(NAME, "worse live")
    assert registry.resolve(NAME) == three[0].target
    with pytest.raises(AliasNotFoundError):
        registry.promote_challenger(NAME, reason="none left")


def test_promote_challenger_is_fenced_and_verified(
    registry: Registry, redis_client: redis.Redis, three: list[ModelVersion]
) -> None:
    registry.promote(NAME, 1, expected_current=None, reason="a")
    registry.set_alias(NAME, "challenger", 2, expected_current=None, reason="shadow")
    with pytest.raises(PromotionConflictError):
        registry.promote_challenger(NAME, reason="x", expected_champion=three[2].target)

    flip_a_byte(registry, redis_client, 2)
    with pytest.raises(DigestMismatchError, match="the challenger"):
        registry.promote_challenger(NAME, reason="x", expected_champion=three[0].target)
    assert registry.get_model(NAME).aliases == {
        "champion": three[0].target,
        "challenger": three[1].target,
    }


def test_promote_challenger_takes_the_champion_and_the_challenger_by_number(
    registry: Registry, three: list[ModelVersion]
) -> None:
    registry.promote(NAME, 1, expected_current=None, reason="a")
    registry.set_alias(NAME, "challenger", 2, expected_current=None, reason="shadow")
    with pytest.raises(PromotionConflictError, match="the challenger is v2"):
        registry.promote_challenger(NAME, reason="x", expected_champion=1, expected_challenger=3)
    with pytest.raises(PromotionConflictError):
        registry.promote_challenger(NAME, reason="x", expected_champion=3)

    # An int names the version as ``promote``'s expected_current does (was: always refused).
    entry = registry.promote_challenger(
        NAME, reason="better", expected_champion=1, expected_challenger=2
    )

    assert (entry.from_target, entry.to_target) == (three[0].target, three[1].target)
    assert registry.get_model(NAME).aliases == {"champion": three[1].target}


def test_fallback_targets_are_earlier_champions_newest_first_never_rolled_back_or_rejected(
    registry: Registry, register: Register, three: list[ModelVersion]
) -> None:
    fourth = register(train_transactions(seed=3))
    for version, expected in ((1, None), (2, 1), (3, 2), (4, 3)):
        registry.promote(NAME, version, expected_current=expected, reason="next")
    assert registry.fallback_targets(NAME) == [t.target for t in reversed(three)]

    registry.rollback(NAME, "v4 misbehaves")
    registry.rollback(NAME, "v3 too")
    # v2 is the champion, v3 and v4 were rolled back: only v1 may stand in.
    assert registry.fallback_targets(NAME) == [three[0].target]
    registry.reject(NAME, 1, "found wanting")
    assert registry.fallback_targets(NAME) == []
    assert fourth.version == 4


def test_the_cli_promotes_a_rolled_back_version_only_with_reviewed_and_a_challenger_in_one_step(
    registry: Registry, registry_settings: Settings, three: list[ModelVersion]
) -> None:
    runner = CliRunner(env=settings_env(registry_settings))

    def run(*args: str) -> Any:
        return runner.invoke(cli, ["registry", *args])

    registry.promote(NAME, 1, expected_current=None, reason="a")
    registry.promote(NAME, 2, expected_current=1, reason="b")
    assert run("rollback", NAME, "--reason", "v2 misbehaves").exit_code == 0

    refused = run("promote", NAME, "2", "--reason", "again")
    assert refused.exit_code == 1, refused.output
    assert "--reviewed" in refused.output
    again = run("promote", NAME, "2", "--reason", "fixed", "--reviewed")
    assert again.exit_code == 0, again.output
    assert "(promote, reviewed: fixed)" in again.output
    history = json.loads(run("history", NAME, "--json").output)
    assert [(e["action"], e["reviewed"]) for e in history[:2]] == [
        ("promote", True),
        ("rollback", False),
    ]

    registry.set_alias(NAME, "challenger", 3, expected_current=None, reason="shadow")
    moved = run("promote-challenger", NAME, "--reason", "better in shadow")
    assert moved.exit_code == 0, moved.output
    assert registry.get_model(NAME).aliases == {"champion": three[2].target}


def test_an_export_writes_the_bytes_it_verified_not_bytes_changed_after_the_check(
    *,
    registry: Registry,
    redis_client: redis.Redis,
    three: list[ModelVersion],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    fetch = Loader.fetch
    reads: list[int] = []

    def fetch_then_tamper(
        self: Loader, name: str, version: int
    ) -> tuple[dict[bytes, bytes], bytes | None]:
        fetched = fetch(self, name, version)
        reads.append(version)
        if len(reads) == 1:  # the artifact changes in Redis right after the first read
            flip_a_byte(registry, redis_client, version)
        return fetched

    monkeypatch.setattr(Loader, "fetch", fetch_then_tamper)
    exported = registry.export_version(NAME, 2, tmp_path / "v2.export")
    monkeypatch.undo()

    # What was written is what was verified: it imports (the import checks it again).
    imported = registry.import_version(tmp_path / "v2.export")
    assert imported.artifact_digest == exported.artifact_digest == three[1].artifact_digest
    # And the stored bytes, tampered after the read, are refused for export.
    with pytest.raises(IntegrityError, match="refusing to export"):
        registry.export_version(NAME, 2, tmp_path / "again.export")
