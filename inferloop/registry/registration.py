"""Registering a version: the artifact loaded back and checked, signed, stored atomically.

``store`` is shared with imports: it takes the next version number, signs the manifest
and writes metadata and artifact in one script, then runs retention.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from inferloop.registry import artifact, golden
from inferloop.registry.backend import Backend, talks_to_redis
from inferloop.registry.entities import ModelVersion, check_model_name
from inferloop.registry.errors import (
    ArtifactTooLargeError,
    InvalidVersionError,
    RegistryStorageError,
    SigningKeyError,
    VersionStateError,
)
from inferloop.registry.loading import unpickle_checked
from inferloop.registry.manifest import (
    FORMAT,
    canonical_json,
    library_versions,
    now_iso,
    to_json_value,
)
from inferloop.registry.reads import Reads
from inferloop.registry.retention import Retention
from inferloop.registry.storage import run

log = logging.getLogger(__name__)

_MAX_GOLDEN_EVENTS = 1000


class Registration:
    """Stores new versions (registered here, or imported) as signed ``candidate``s."""

    def __init__(self, backend: Backend, reads: Reads, retention: Retention) -> None:
        self.backend = backend
        self._reads = reads
        self._retention = retention

    @talks_to_redis
    def register(
        self,
        name: str,
        pipeline: Any,
        *,
        domain: str,
        threshold: float,
        input_schema_version: int,
        golden_events: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
        metrics: Mapping[str, Any],
        champion_metrics: Mapping[str, Any] | None,
        lineage: Mapping[str, Any],
        created_by: str,
        description: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> ModelVersion:
        """Store a fitted pipeline as a new signed version; see ``Registry.register``."""
        started = time.perf_counter()
        check_model_name(name)
        self.require_signer()
        events = _golden_events(golden_events)
        # Fail fast: the pickling and checks below take a while.
        self.backend.ping()
        data = self._checked_size(name, artifact.dump(pipeline))
        scores, load = self._round_trip(name, pipeline, data, domain, events)
        body = {
            "domain": str(domain),
            "created_at": now_iso(),
            "created_by": str(created_by),
            "threshold": _threshold(threshold),
            "input_schema_version": int(input_schema_version),
            "params": to_json_value(dict(params), "params"),
            "metrics": to_json_value(dict(metrics), "metrics"),
            "champion_metrics": to_json_value(champion_metrics, "champion_metrics"),
            "lineage": to_json_value(dict(lineage), "lineage"),
            "libraries": library_versions(),
            "artifact": _artifact_fields(data),
            "golden": {"events": events, "scores": scores},
            "load": load,
            "imported_from": None,
        }
        stored = self.store(name, body, data, tags=tags or {}, description=description)
        log.info(
            "registered %s v%d (%d bytes, digest %s) in %.2f s",
            name,
            stored.version,
            len(data),
            stored.artifact_digest[:12],
            time.perf_counter() - started,
        )
        return stored

    def require_signer(self) -> None:
        """SigningKeyError unless this registry signs, or accepts unsigned versions."""
        if self.backend.signer is None and not self.backend.trust.allow_unsigned:
            raise SigningKeyError(
                "no signing key: set INFERLOOP_REGISTRY__SIGNING_KEY_PATH (or, for "
                "development only, INFERLOOP_REGISTRY__ALLOW_UNSIGNED=true)"
            )

    def store(
        self,
        name: str,
        body: Mapping[str, Any],
        data: bytes,
        *,
        tags: Mapping[str, str],
        description: str,
    ) -> ModelVersion:
        """Store ``body`` (the manifest without format, name and version) and ``data`` as
        the next version of ``name``, signed; then run retention."""
        b, k = self.backend, self.backend.keys
        self._ensure_model(name)
        version = int(b.client.incr(k.version_counter(name)))
        manifest = canonical_json({"format": FORMAT, "name": name, "version": version, **body})
        fields: dict[str, Any] = {
            "manifest": manifest,
            "status": "candidate",
            "artifact_digest": body["artifact"]["digest"],
            "tags": json.dumps(to_json_value(dict(tags), "tags"), sort_keys=True),
            "description": description,
        }
        if b.signer is not None:
            fields["signature"] = base64.b64encode(b.signer.sign(manifest)).decode()
            fields["key_id"] = b.signer.key_id
        answer = run(
            b.scripts.register,
            [k.version(name, version), k.artifact(name, version), k.versions(name), k.model(name)],
            [version, data, now_iso(), *(item for pair in fields.items() for item in pair)],
        )
        if answer[0] != "ok":
            raise RegistryStorageError(f"{name} v{version} exists already (counter reset?)")
        self._retain_after_store(name)
        return self._reads.get_version(name, version)

    def _checked_size(self, name: str, data: bytes) -> bytes:
        limit = self.backend.max_artifact_bytes
        if len(data) > limit:
            raise ArtifactTooLargeError(
                f"{name}: the artifact is {len(data):,} bytes compressed, above the limit of "
                f"{limit:,} (INFERLOOP_REGISTRY__MAX_ARTIFACT_BYTES; Redis values stop at 512 MB)"
            )
        return data

    def _round_trip(
        self, name: str, pipeline: Any, data: bytes, domain: str, events: list[Any]
    ) -> tuple[list[float], dict[str, Any]]:
        rows_builder = self.backend.rows_builder
        original = golden.scores(pipeline, rows_builder(domain, events)).tolist()
        draft = {
            "domain": domain,
            "artifact": {"compression": artifact.COMPRESSION},
            "golden": {"events": events, "scores": original},
        }
        # Our own bytes, just made: unpickling them runs nothing this process did not write.
        loaded = unpickle_checked(draft, data, rows_builder, f"{name} (new version)")
        load = {
            "load_time_s": round(loaded.load_time_s, 6),
            "resident_bytes": loaded.resident_bytes,
        }
        return loaded.scores, load

    def _ensure_model(self, name: str) -> None:
        # The set of names has no hash tag of its own, so it is written beside, not inside,
        # the atomic registration; a name without versions is a harmless leftover.
        k = self.backend.keys
        with self.backend.client.pipeline(transaction=False) as pipe:
            pipe.sadd(k.models(), name)
            pipe.hsetnx(k.model(name), "created_at", now_iso())
            pipe.execute()

    def _retain_after_store(self, name: str) -> None:
        try:
            self._retention.apply_retention(name)
        except (VersionStateError, RegistryStorageError) as exc:
            # The version is stored; a retention failure must not make it look lost.
            log.error("retention of %s failed after registering: %s", name, exc)


def _threshold(value: float) -> float:
    threshold = float(value)
    if not 0.0 <= threshold <= 1.0:
        raise InvalidVersionError(f"threshold {value!r} is not a score between 0 and 1")
    return threshold


def _golden_events(events: Sequence[Mapping[str, Any]]) -> list[Any]:
    if not events:
        raise InvalidVersionError("golden_events: at least one event is needed")
    if len(events) > _MAX_GOLDEN_EVENTS:
        raise InvalidVersionError(f"golden_events: at most {_MAX_GOLDEN_EVENTS} events")
    return [to_json_value(dict(e), f"golden_events[{i}]") for i, e in enumerate(events)]


def _artifact_fields(data: bytes) -> dict[str, Any]:
    return {
        "digest": artifact.digest(data),
        "size": len(data),
        "compression": artifact.COMPRESSION,
        "format": "joblib",
    }
