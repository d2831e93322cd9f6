"""The signed manifest of a version, and the conversion of stored fields to entities.

The manifest is a canonical JSON document holding everything that decides how a version
is used or judged: name, version, artifact digest and size, domain, threshold, input
schema version, library versions, golden sample, params, metrics, lineage. Its exact
stored bytes are what is signed, so verification never depends on re-encoding.
"""

from __future__ import annotations

import base64
import json
import math
import platform
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import numpy as np

from inferloop.registry.entities import STATUSES, GoldenSample, ModelVersion
from inferloop.registry.errors import (
    IncompatibleLibraryError,
    InvalidVersionError,
    RegistryStorageError,
)

FORMAT = 1
_LIBRARIES = ("scikit-learn", "numpy", "scipy", "joblib", "inferloop")


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries an artifact depends on, in this process."""
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def check_compatible(libraries: Mapping[str, str], what: str) -> None:
    """IncompatibleLibraryError unless ``libraries`` has this process's scikit-learn minor."""
    built = libraries.get("scikit-learn", "unknown")
    running = library_versions()["scikit-learn"]
    if _minor(built) != _minor(running):
        raise IncompatibleLibraryError(
            f"{what} was built with scikit-learn {built}; this process runs {running} "
            "(scikit-learn does not support loading across minor versions)"
        )


def to_json_value(value: Any, field: str) -> Any:
    """``value`` as plain JSON types: numpy scalars and arrays unwrapped, tuples as lists,
    and non-finite floats as None (undefined); InvalidVersionError naming ``field``."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        out = {}
        for key, inner in value.items():
            if not isinstance(key, str):
                raise InvalidVersionError(f"{field}: key {key!r} is not a string")
            out[key] = to_json_value(inner, f"{field}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [to_json_value(v, f"{field}[{i}]") for i, v in enumerate(value)]
    raise InvalidVersionError(f"{field}: {type(value).__name__} cannot be stored as JSON")


def canonical_json(value: Any) -> bytes:
    """One byte string per value: sorted keys, no spaces, ASCII."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def now_iso() -> str:
    """The current UTC time as ISO 8601 with microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _text(fields: Mapping[bytes, bytes], name: str, default: str = "") -> str:
    raw = fields.get(name.encode())
    return raw.decode() if raw is not None else default


def parse_manifest(data: bytes, what: str) -> dict[str, Any]:
    """The manifest in ``data``; RegistryStorageError when it is not one."""
    try:
        manifest = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RegistryStorageError(f"{what}: the stored manifest is not JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise RegistryStorageError(f"{what}: the stored manifest is not format {FORMAT}")
    return manifest


def version_from_fields(
    fields: Mapping[bytes, bytes], aliases: tuple[str, ...] = ()
) -> ModelVersion:
    """The entity for a stored version hash (its manifest, unverified, plus its state)."""
    manifest = parse_manifest(fields.get(b"manifest", b""), "version")
    what = f"{manifest.get('name')} v{manifest.get('version')}"
    status = _text(fields, "status")
    if status not in STATUSES:
        raise RegistryStorageError(f"{what}: unknown status {status!r}")
    deleted_at = _text(fields, "deleted_at")
    try:
        artifact = manifest["artifact"]
        golden = manifest["golden"]
        return ModelVersion(
            name=manifest["name"],
            version=int(manifest["version"]),
            domain=manifest["domain"],
            created_at=datetime.fromisoformat(manifest["created_at"]),
            created_by=manifest["created_by"],
            threshold=float(manifest["threshold"]),
            input_schema_version=int(manifest["input_schema_version"]),
            params=manifest["params"],
            metrics=manifest["metrics"],
            champion_metrics=manifest["champion_metrics"],
            lineage=manifest["lineage"],
            libraries=manifest["libraries"],
            artifact_digest=artifact["digest"],
            artifact_size=int(artifact["size"]),
            artifact_compression=artifact["compression"],
            golden=GoldenSample(tuple(golden["events"]), tuple(golden["scores"])),
            load_time_s=float(manifest["load"]["load_time_s"]),
            resident_bytes=int(manifest["load"]["resident_bytes"]),
            imported_from=manifest.get("imported_from"),
            status=status,
            signature=_text(fields, "signature") or None,
            signing_key_id=_text(fields, "key_id") or None,
            tags=json.loads(_text(fields, "tags", "{}")),
            description=_text(fields, "description"),
            aliases=aliases,
            artifact_deleted_at=datetime.fromisoformat(deleted_at) if deleted_at else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RegistryStorageError(f"{what}: the stored manifest lacks {exc}") from exc


def signature_bytes(fields: Mapping[bytes, bytes]) -> bytes | None:
    """The raw signature stored in a version hash, if any."""
    text = fields.get(b"signature")
    if not text:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        # Not base64: it cannot be a signature, and verification will say so.
        return b"\x00"
