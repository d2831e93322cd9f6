"""A tampered version is refused with a typed error, and nothing of it is unpickled.

The stored artifact is a working model whose unpickling appends to a trace file, so
"nothing was unpickled" is observed, not assumed; the last test shows the trace does
appear when the same version is loaded untouched.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from inferloop.registry import (
    ArtifactDeletedError,
    BadSignatureError,
    DigestMismatchError,
    GoldenMismatchError,
    IncompatibleLibraryError,
    IntegrityError,
    ManifestMismatchError,
    MissingSignatureError,
    Registry,
    SignatureError,
    SigningKeyError,
    UnknownSigningKeyError,
)
from inferloop.registry.manifest import canonical_json
from inferloop.registry.signing import KeyPair, Signer, generate_key_pair
from tests.registry.factories import Register, RegistryFactory, TracingModel, Trained


@dataclass(frozen=True)
class Case:
    """A signed version whose artifact leaves a trace file when unpickled."""

    registry: Registry
    client: redis.Redis
    version: int
    trace: Path
    signer: Signer

    @property
    def version_key(self) -> str:
        return self.registry.keys.version("transactions", self.version)

    @property
    def artifact_key(self) -> str:
        return self.registry.keys.artifact("transactions", self.version)

    def load(self) -> None:
        self.registry.load("transactions", self.version)

    def rewrite_manifest(
        self, signer: Signer, change: Callable[[dict[str, Any]], None] = lambda m: None
    ) -> None:
        manifest = json.loads(self.client.hget(self.version_key, "manifest") or b"")
        change(manifest)
        data = canonical_json(manifest)
        signature = base64.b64encode(signer.sign(data)).decode()
        self.client.hset(
            self.version_key,
            mapping={"manifest": data, "signature": signature, "key_id": signer.key_id},
        )


@pytest.fixture
def case(
    *,
    registry: Registry,
    redis_client: redis.Redis,
    register: Register,
    tx_model: Trained,
    signing_keys: KeyPair,
    tmp_path: Path,
) -> Case:
    """The traced version; the trace its own registration left (it loads its bytes back
    once) is removed."""
    trace = tmp_path / "trace.txt"
    model = TracingModel(tx_model.pipeline, str(trace))
    traced = Trained("transactions", model, tx_model.events, tx_model.y, tx_model.golden_events)
    version = register(traced).version
    assert trace.read_text() == "unpickled\n", "registration loads the artifact back once"
    trace.unlink()
    return Case(registry, redis_client, version, trace, Signer.from_file(signing_keys.private_path))


def _intruder(tmp_path: Path) -> Signer:
    pair = generate_key_pair(tmp_path / "other", "intruder")
    return Signer.from_file(pair.private_path)


def test_a_flipped_artifact_byte_is_refused_unpickled(case: Case) -> None:
    stored: Any = case.client.get(case.artifact_key)
    data = bytearray(stored)
    data[len(data) // 2] ^= 0x01
    case.client.set(case.artifact_key, bytes(data))

    with pytest.raises(DigestMismatchError, match=f"transactions v{case.version}"):
        case.load()
    assert not case.trace.exists()


def test_a_removed_signature_is_refused_unpickled(case: Case) -> None:
    case.client.hdel(case.version_key, "signature")

    with pytest.raises(MissingSignatureError, match=f"transactions v{case.version}"):
        case.load()
    assert not case.trace.exists()


def test_a_signature_by_another_key_is_refused_unpickled(case: Case, tmp_path: Path) -> None:
    intruder = _intruder(tmp_path)
    case.rewrite_manifest(intruder)

    with pytest.raises(UnknownSigningKeyError, match=intruder.key_id):
        case.load()
    assert not case.trace.exists()


def test_another_keys_signature_under_the_trusted_key_id_is_refused_unpickled(
    case: Case, tmp_path: Path
) -> None:
    case.rewrite_manifest(_intruder(tmp_path))
    case.client.hset(case.version_key, "key_id", case.signer.key_id)

    with pytest.raises(BadSignatureError):
        case.load()
    assert not case.trace.exists()


def test_an_edited_manifest_breaks_its_signature(case: Case) -> None:
    manifest = json.loads(case.client.hget(case.version_key, "manifest") or b"")
    manifest["threshold"] = 0.99
    case.client.hset(case.version_key, "manifest", canonical_json(manifest))

    with pytest.raises(SignatureError):
        case.load()
    assert not case.trace.exists()


def test_a_signed_version_copied_under_another_number_is_refused_unpickled(
    case: Case, register: Register, tx_model: Trained
) -> None:
    target = register(tx_model).version
    source: Any = case.client.hgetall(case.version_key)
    case.client.hset(case.registry.keys.version("transactions", target), mapping=source)
    artifact = case.client.get(case.artifact_key) or b""
    case.client.set(case.registry.keys.artifact("transactions", target), artifact)

    with pytest.raises(ManifestMismatchError, match=f"v{target}"):
        case.registry.load("transactions", target)
    assert not case.trace.exists()


def test_another_scikit_learn_minor_version_is_refused_unpickled(case: Case) -> None:
    def older(manifest: dict[str, Any]) -> None:
        manifest["libraries"]["scikit-learn"] = "1.0.2"

    case.rewrite_manifest(case.signer, older)

    with pytest.raises(IncompatibleLibraryError, match=r"scikit-learn 1\.0\.2"):
        case.load()
    assert not case.trace.exists()


def test_a_worker_without_verify_keys_refuses_signed_versions(
    case: Case, registry_factory: RegistryFactory
) -> None:
    keyless = registry_factory(signing_key_path=None, verify_key_paths=())
    with pytest.raises(SigningKeyError, match="VERIFY_KEY_PATHS"):
        keyless.load("transactions", case.version)
    assert not case.trace.exists()


def test_a_missing_artifact_is_refused(case: Case) -> None:
    case.client.delete(case.artifact_key)
    with pytest.raises(IntegrityError, match="missing"):
        case.load()
    assert not case.trace.exists()


def test_a_model_that_does_not_reproduce_its_golden_scores_is_refused(case: Case) -> None:
    def shifted(manifest: dict[str, Any]) -> None:
        manifest["golden"]["scores"] = [min(1.0, s + 0.1) for s in manifest["golden"]["scores"]]

    case.rewrite_manifest(case.signer, shifted)
    with pytest.raises(GoldenMismatchError, match="golden event"):
        case.load()


def test_the_untouched_version_does_leave_the_trace(case: Case) -> None:
    case.load()
    assert case.trace.read_text() == "unpickled\n"


def test_a_tombstone_cannot_be_loaded(
    registry: Registry, register: Register, tx_model: Trained
) -> None:
    version = register(tx_model).version
    registry.delete_version("transactions", version, reason="test")
    with pytest.raises(ArtifactDeletedError, match="deleted"):
        registry.load("transactions", version)
