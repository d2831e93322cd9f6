"""Export a version to a file and import one into this registry (the file format is in
``transfer.py``).

An export is verified before it is written; an import is verified (signature by a
trusted key, digest, scikit-learn version, golden scores as a worker would serve it)
before anything of it is stored, then signed by this registry as a new version.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inferloop.domains import get_domain
from inferloop.registry import serving, transfer
from inferloop.registry.backend import Backend, talks_to_redis
from inferloop.registry.entities import LoadedModel, ModelVersion, check_model_name
from inferloop.registry.errors import (
    IntegrityError,
    InvalidVersionError,
    RegistryStorageError,
    SigningKeyError,
)
from inferloop.registry.loader import Loader
from inferloop.registry.loading import Trust, unpickle_checked, verified_manifest
from inferloop.registry.manifest import (
    canonical_json,
    now_iso,
    signature_bytes,
    version_from_fields,
)
from inferloop.registry.moves import refusing
from inferloop.registry.registration import Registration
from inferloop.registry.signing import Verifier

log = logging.getLogger(__name__)


class Exchange:
    """Exports and imports of versions."""

    def __init__(self, backend: Backend, loader: Loader, registration: Registration) -> None:
        self.backend = backend
        self._loader = loader
        self._registration = registration

    @talks_to_redis
    def export_version(self, name: str, version: int, path: Path) -> ModelVersion:
        """Write a version to ``path``, verified first; see ``Registry.export_version``.

        The fields and artifact verified are the ones written: read once, so bytes
        changed in Redis after a check cannot be exported unchecked."""
        fields, data = self._loader.fetch(check_model_name(name), version)
        try:
            if data is None:
                raise IntegrityError(f"{name} v{version}: the artifact is missing from Redis")
            verified_manifest(
                manifest_bytes=fields.get(b"manifest", b""),
                signature=signature_bytes(fields),
                key_id=(fields.get(b"key_id") or b"").decode() or None,
                data=data,
                name=name,
                version=version,
                trust=self.backend.trust,
                check_libraries=False,
            )
        except (IntegrityError, SigningKeyError, RegistryStorageError) as exc:
            raise IntegrityError(f"refusing to export: {exc}") from exc
        transfer.write(path, fields, data)
        return version_from_fields(fields)

    @talks_to_redis
    def import_version(self, path: Path, *, trust: Verifier | None = None) -> ModelVersion:
        """Store the version exported to ``path`` as a new version of its model, checked
        first; see ``Registry.import_version``."""
        b = self.backend
        self._registration.require_signer()
        b.ping()
        exported = transfer.read(path, b.max_artifact_bytes)
        check_model_name(exported.name)
        keys = dict(b.trust.verifier.keys) | (dict(trust.keys) if trust else {})
        manifest, signed_by = verified_manifest(
            manifest_bytes=exported.manifest,
            signature=exported.signature,
            key_id=exported.key_id,
            data=exported.data,
            name=exported.name,
            version=exported.version,
            trust=Trust(Verifier(keys), b.trust.allow_unsigned),
        )
        what = f"{exported.name} v{exported.version} from {path}"
        unpickled = unpickle_checked(manifest, exported.data, b.rows_builder, what)
        _check_serves(manifest, unpickled.pipeline, what)
        body = {k: v for k, v in manifest.items() if k not in ("format", "name", "version")}
        body["imported_from"] = {
            "name": exported.name,
            "version": exported.version,
            "digest": manifest["artifact"]["digest"],
            "signing_key_id": signed_by,
            "imported_at": now_iso(),
        }
        stored = self._registration.store(
            exported.name, body, exported.data, tags=exported.tags, description=exported.description
        )
        log.info("imported %s as %s v%d", what, stored.name, stored.version)
        return stored


def _check_serves(manifest: Mapping[str, Any], pipeline: Any, what: str) -> None:
    """Check an exported version as a worker would serve it (schema version, golden
    scores through the domain's scorer) before it is stored."""
    entity = version_from_fields({b"manifest": canonical_json(manifest), b"status": b"candidate"})
    loaded = LoadedModel(entity, pipeline, 0.0, 0, None)
    with refusing(f"to import {what}", unknown_domain=InvalidVersionError):
        serving.activate(loaded, get_domain(entity.domain))
