"""Verification before unpickling, and the checks after it.

The order is the point: the signature over the manifest, the manifest's name and
version, the artifact's size and digest, and the scikit-learn version are all checked
on bytes; only then is anything unpickled, and the golden sample is scored before the
model is handed out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inferloop.registry import artifact, golden
from inferloop.registry.errors import (
    DigestMismatchError,
    GoldenMismatchError,
    InvalidVersionError,
    ManifestMismatchError,
    MissingSignatureError,
    SigningKeyError,
)
from inferloop.registry.golden import RowsBuilder
from inferloop.registry.manifest import check_compatible, parse_manifest
from inferloop.registry.signing import Verifier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trust:
    """What a loader accepts: signatures by ``verifier``'s keys, or (development only)
    unsigned artifacts."""

    verifier: Verifier
    allow_unsigned: bool = False

    def check(
        self, manifest: bytes, signature: bytes | None, key_id: str | None, what: str
    ) -> str | None:
        """The id of the key that signed ``manifest``, None if accepted unsigned."""
        if self.allow_unsigned and (not signature or not self.verifier.keys):
            log.warning(
                "DEVELOPMENT MODE: %s accepted WITHOUT a verified signature "
                "(INFERLOOP_REGISTRY__ALLOW_UNSIGNED is on; never use this in production)",
                what,
            )
            return None
        if not self.verifier.keys:
            if not signature:
                raise MissingSignatureError(f"{what} has no signature; refusing to load it")
            raise SigningKeyError(
                f"cannot verify {what}: no verify keys are configured "
                "(INFERLOOP_REGISTRY__VERIFY_KEY_PATHS)"
            )
        return self.verifier.verify(manifest, signature, key_id, what)


def verified_manifest(
    *,
    manifest_bytes: bytes,
    signature: bytes | None,
    key_id: str | None,
    data: bytes,
    name: str,
    version: int | None,
    trust: Trust,
    check_libraries: bool = True,
) -> tuple[dict[str, Any], str | None]:
    """The manifest once its signature, identity, digest and (unless told not to)
    scikit-learn version check out, with the id of the key that signed it. Nothing is
    unpickled here."""
    what = f"{name} v{version}" if version is not None else f"{name} (export)"
    signed_by = trust.check(manifest_bytes, signature, key_id, what)
    manifest = parse_manifest(manifest_bytes, what)
    if manifest.get("name") != name or (version is not None and manifest.get("version") != version):
        raise ManifestMismatchError(
            f"{what}: its signed manifest is for {manifest.get('name')} "
            f"v{manifest.get('version')}; refusing to load it"
        )
    check_digest(manifest["artifact"], data, what)
    if check_libraries:
        check_compatible(manifest["libraries"], what)
    return manifest, signed_by


def check_digest(recorded: Mapping[str, Any], data: bytes, what: str) -> None:
    """DigestMismatchError unless ``data`` has the recorded size and SHA-256."""
    if len(data) != recorded["size"] or artifact.digest(data) != recorded["digest"]:
        raise DigestMismatchError(
            f"{what}: artifact bytes do not match the signed digest "
            f"{str(recorded['digest'])[:12]} ({len(data)} bytes, signed {recorded['size']}); "
            "refusing to load it"
        )


@dataclass(frozen=True)
class Unpickled:
    """A checked pipeline and what it cost to get it."""

    pipeline: Any
    load_time_s: float
    resident_bytes: int
    check_time_s: float
    scores: list[float]


def unpickle_checked(
    manifest: Mapping[str, Any], data: bytes, rows_builder: RowsBuilder, what: str
) -> Unpickled:
    """Unpickle verified bytes and check the golden sample (GoldenMismatchError)."""
    started = time.perf_counter()
    pipeline = artifact.unpickle(data, manifest["artifact"]["compression"])
    load_time_s = time.perf_counter() - started
    resident_bytes = artifact.deep_size_bytes(pipeline)
    started = time.perf_counter()
    sample = manifest["golden"]
    try:
        rows = rows_builder(manifest["domain"], sample["events"])
    except InvalidVersionError as exc:
        # E.g. events of a newer schema than this process knows: it cannot score them.
        raise GoldenMismatchError(f"{what}: {exc}") from exc
    scores = golden.check(pipeline, rows, sample["scores"], what)
    return Unpickled(pipeline, load_time_s, resident_bytes, time.perf_counter() - started, scores)
