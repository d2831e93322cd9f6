"""Report files stored with a version (file name -> bytes), such as the gate's report."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from inferloop.registry.backend import Backend, talks_to_redis
from inferloop.registry.entities import check_model_name
from inferloop.registry.errors import InvalidVersionError
from inferloop.registry.reads import Reads
from inferloop.registry.storage import run

_MAX_REPORT_FILE_NAME = 200


class Reports:
    """Stores and reads the report files of versions."""

    def __init__(self, backend: Backend, reads: Reads) -> None:
        self.backend = backend
        self._reads = reads

    @talks_to_redis
    def put_report(self, name: str, version: int, files: Mapping[str, bytes]) -> None:
        """Store report files (file name -> bytes) with a version; same names replace."""
        for file_name in files:
            _check_file_name(file_name)
        if not files:
            return
        b = self.backend
        answer = run(
            b.scripts.put_report,
            [b.keys.version(check_model_name(name), version), b.keys.report(name, version)],
            [item for pair in files.items() for item in pair],
        )
        b.raise_for(answer, f"report of {name} v{version}", name, version)

    @talks_to_redis
    def get_report(self, name: str, version: int) -> dict[str, bytes]:
        """The report files of a version (file name -> bytes); empty if there are none."""
        self._reads.get_version(name, version)
        report_key = self.backend.keys.report(name, version)
        raw = cast(dict[bytes, bytes], self.backend.client.hgetall(report_key))
        return {key.decode(): value for key, value in sorted(raw.items())}


def _check_file_name(file_name: str) -> None:
    if (
        not file_name
        or len(file_name) > _MAX_REPORT_FILE_NAME
        or file_name in (".", "..")
        or any(c in file_name for c in "/\\\0")
    ):
        raise InvalidVersionError(f"report file name {file_name!r} must be a plain file name")
