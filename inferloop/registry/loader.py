"""Fetching a version from Redis, verifying it, and the per-process cache of loaded ones.

``loading.py`` holds the checks of the bytes (signature, digest, unpickling, golden
scores); this is where the bytes come from and where a loaded version is kept.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import cast

from inferloop.registry.backend import Backend, talks_to_redis
from inferloop.registry.entities import LoadedModel, VerifyResult, check_model_name
from inferloop.registry.errors import (
    ArtifactDeletedError,
    IntegrityError,
    RegistryStorageError,
    SigningKeyError,
    VersionStateError,
)
from inferloop.registry.loading import unpickle_checked, verified_manifest
from inferloop.registry.manifest import signature_bytes, version_from_fields
from inferloop.registry.reads import Reads

log = logging.getLogger(__name__)

# Loaded versions kept per model: the one in use and the one before it, so a rollback
# swaps back without a reload.
_LOADED_PER_MODEL = 2


class Loader:
    """Loads and verifies stored versions; keeps the last loaded ones per model."""

    def __init__(self, backend: Backend, reads: Reads) -> None:
        self.backend = backend
        self._reads = reads
        self._loaded: dict[str, OrderedDict[int, LoadedModel]] = {}
        self._lock = threading.Lock()

    def load(self, name: str, version: int, *, digest: str | None = None) -> LoadedModel:
        """A verified, checked version, loaded once per process (later calls return it);
        see ``Registry.load``."""
        with self._lock:
            cached = self._loaded.get(name, OrderedDict()).get(version)
            if cached is not None and digest in (None, cached.version.artifact_digest):
                return cached
            loaded = self.load_uncached(name, version, digest)
            per_model = self._loaded.setdefault(name, OrderedDict())
            per_model[version] = loaded
            per_model.move_to_end(version)
            while len(per_model) > _LOADED_PER_MODEL:
                per_model.popitem(last=False)
            return loaded

    @talks_to_redis
    def load_uncached(self, name: str, version: int, digest: str | None) -> LoadedModel:
        """Fetch, verify and check ``version`` now, bypassing (and not filling) the cache."""
        started = time.perf_counter()
        what = f"{check_model_name(name)} v{version}"
        log.info("loading %s", what)
        fields, data = self.fetch(name, version)
        fetched = time.perf_counter()
        if data is None:
            raise IntegrityError(f"{what}: the artifact is missing from Redis")
        manifest, signed_by = verified_manifest(
            manifest_bytes=fields.get(b"manifest", b""),
            signature=signature_bytes(fields),
            key_id=_key_id(fields),
            data=data,
            name=name,
            version=version,
            trust=self.backend.trust,
        )
        if digest is not None and digest != manifest["artifact"]["digest"]:
            raise VersionStateError(
                f"{what} has digest {manifest['artifact']['digest'][:12]}, not {digest[:12]}: "
                "its number now names another artifact"
            )
        verified = time.perf_counter()
        checked = unpickle_checked(manifest, data, self.backend.rows_builder, what)
        entity = version_from_fields(fields)
        log.info(
            "loaded %s (digest %s, key %s) in %.3f s: fetch %.3f s, verify %.3f s, "
            "unpickle %.3f s, golden check %.3f s; %d bytes resident",
            what,
            entity.artifact_digest[:12],
            signed_by or "none, unsigned",
            time.perf_counter() - started,
            fetched - started,
            verified - fetched,
            checked.load_time_s,
            checked.check_time_s,
            checked.resident_bytes,
        )
        return LoadedModel(
            version=entity,
            pipeline=checked.pipeline,
            load_time_s=checked.load_time_s,
            resident_bytes=checked.resident_bytes,
            verified_key_id=signed_by,
            check_time_s=checked.check_time_s,
            total_time_s=time.perf_counter() - started,
        )

    def fetch(self, name: str, version: int) -> tuple[dict[bytes, bytes], bytes | None]:
        """A version's fields and artifact (None if missing), read in one transaction;
        ArtifactDeletedError for a tombstone."""
        b = self.backend
        # One transaction: metadata and artifact from the same moment.
        with b.client.pipeline(transaction=True) as pipe:
            pipe.hgetall(b.keys.version(name, version))
            pipe.get(b.keys.artifact(name, version))
            fields, data = pipe.execute()
        if not fields:
            raise b.missing(name, version)
        if b"deleted_at" in fields:
            raise ArtifactDeletedError(
                f"{name} v{version}: its artifact was deleted at "
                f"{fields[b'deleted_at'].decode()} ({fields.get(b'deleted_reason', b'').decode()})"
            )
        return fields, data

    @talks_to_redis
    def verify(self, name: str, version: int) -> VerifyResult:
        """Check one stored version's signature and digest; nothing is unpickled. A
        tombstone's manifest signature alone is checked."""
        what = f"{check_model_name(name)} v{version}"
        trust = self.backend.trust
        try:
            fields, data = self.fetch(name, version)
        except ArtifactDeletedError:
            key = self.backend.keys.version(name, version)
            fields = cast(dict[bytes, bytes], self.backend.client.hgetall(key))
            data = None
        key_id = _key_id(fields)
        try:
            if data is None and b"deleted_at" in fields:
                trust.check(fields[b"manifest"], signature_bytes(fields), key_id, what)
                return VerifyResult(name, version, True, "tombstone: manifest only", key_id)
            if data is None:
                raise IntegrityError(f"{what}: the artifact is missing from Redis")
            verified_manifest(
                manifest_bytes=fields.get(b"manifest", b""),
                signature=signature_bytes(fields),
                key_id=key_id,
                data=data,
                name=name,
                version=version,
                trust=trust,
                check_libraries=False,
            )
        except (IntegrityError, SigningKeyError, RegistryStorageError) as exc:
            return VerifyResult(name, version, False, str(exc), key_id)
        return VerifyResult(name, version, True, None, key_id)

    @talks_to_redis
    def verify_all(self, name: str | None = None) -> list[VerifyResult]:
        """``verify`` every stored version of ``name``, or of every model."""
        names = [name] if name else [m.name for m in self._reads.list_models()]
        return [self.verify(n, v.version) for n in names for v in self._reads.list_versions(n)]


def _key_id(fields: Mapping[bytes, bytes]) -> str | None:
    return (fields.get(b"key_id") or b"").decode() or None
