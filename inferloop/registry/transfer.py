"""The export file: one version's signed manifest, signature, state and artifact.

An export is an uncompressed tar (the artifact is compressed already) of three members:
``export.json`` (format, name, version, signature, key id, status, tags, description),
``manifest.json`` (the exact signed bytes) and ``artifact.bin``. Reading never extracts
to disk and never trusts a member's size without a bound; the caller verifies the
signature and digest before the bytes are stored or unpickled.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferloop.registry.errors import ExportFormatError
from inferloop.registry.manifest import now_iso, parse_manifest

FORMAT = 1
KIND = "inferloop-model-version"
_HEADER, _MANIFEST, _ARTIFACT = "export.json", "manifest.json", "artifact.bin"
_MAX_MANIFEST_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Exported:
    """What an export file holds, not yet verified."""

    name: str
    version: int
    manifest: bytes
    signature: bytes | None
    key_id: str | None
    data: bytes
    status: str
    tags: Mapping[str, str]
    description: str


def write(path: Path, fields: Mapping[bytes, bytes], data: bytes) -> None:
    """Write the version stored as ``fields`` and ``data`` to ``path`` (atomically)."""
    manifest_bytes = fields[b"manifest"]
    manifest = parse_manifest(manifest_bytes, "export")
    header = {
        "format": FORMAT,
        "kind": KIND,
        "name": manifest["name"],
        "version": manifest["version"],
        "signature": fields.get(b"signature", b"").decode() or None,
        "key_id": fields.get(b"key_id", b"").decode() or None,
        "status": fields.get(b"status", b"").decode(),
        "tags": json.loads(fields.get(b"tags", b"{}")),
        "description": fields.get(b"description", b"").decode(),
        "exported_at": now_iso(),
    }
    members = {
        _HEADER: json.dumps(header, indent=2).encode(),
        _MANIFEST: manifest_bytes,
        _ARTIFACT: data,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle, tarfile.open(fileobj=handle, mode="w") as tar:
            for member, content in members.items():
                info = tarfile.TarInfo(member)
                info.size = len(content)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(content))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read(path: Path, max_artifact_bytes: int) -> Exported:
    """The contents of the export at ``path``; ExportFormatError if it is not one."""
    limits = {_HEADER: 1024 * 1024, _MANIFEST: _MAX_MANIFEST_BYTES, _ARTIFACT: max_artifact_bytes}
    try:
        with tarfile.open(path, mode="r:") as tar:
            members = _members(tar, limits, path)
    except (OSError, tarfile.TarError) as exc:
        raise ExportFormatError(f"{path} is not a readable registry export: {exc}") from exc
    header = _header(members[_HEADER], path)
    return Exported(
        name=str(header["name"]),
        version=int(header["version"]),
        manifest=members[_MANIFEST],
        signature=_signature(header.get("signature"), path),
        key_id=header.get("key_id") or None,
        data=members[_ARTIFACT],
        status=str(header.get("status", "")),
        tags=dict(header.get("tags") or {}),
        description=str(header.get("description") or ""),
    )


def _members(tar: tarfile.TarFile, limits: Mapping[str, int], path: Path) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for info in tar:
        if info.name not in limits or not info.isfile() or info.name in found:
            raise ExportFormatError(f"{path}: unexpected member {info.name!r}")
        if info.size > limits[info.name]:
            raise ExportFormatError(
                f"{path}: {info.name} is {info.size:,} bytes, above the limit {limits[info.name]:,}"
            )
        handle = tar.extractfile(info)
        if handle is None:
            raise ExportFormatError(f"{path}: cannot read {info.name}")
        found[info.name] = handle.read()
    missing = sorted(set(limits) - set(found))
    if missing:
        raise ExportFormatError(f"{path}: missing {', '.join(missing)}")
    return found


def _header(raw: bytes, path: Path) -> dict[str, Any]:
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise ExportFormatError(f"{path}: {_HEADER} is not JSON: {exc}") from exc
    if not isinstance(header, dict) or header.get("kind") != KIND:
        raise ExportFormatError(f"{path}: not a registry export ({KIND})")
    if header.get("format") != FORMAT:
        raise ExportFormatError(f"{path}: export format {header.get('format')} is not {FORMAT}")
    if not isinstance(header.get("version"), int) or not isinstance(header.get("name"), str):
        raise ExportFormatError(f"{path}: {_HEADER} lacks a name and a version number")
    return header


def _signature(value: Any, path: Path) -> bytes | None:
    if not value:
        return None
    try:
        return base64.b64decode(str(value), validate=True)
    except (ValueError, binascii.Error) as exc:
        raise ExportFormatError(f"{path}: the signature is not base64") from exc
