"""Retention: deleting old versions' artifacts, keeping their metadata as tombstones.

An artifact is never deleted while an alias points at its version or it is a rollback
target: the script checks both in the same atomic step as the delete.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from inferloop.registry import history as entries
from inferloop.registry.backend import Backend, talks_to_redis, text
from inferloop.registry.entities import HistoryEntry, check_model_name
from inferloop.registry.errors import InvalidVersionError, VersionStateError
from inferloop.registry.manifest import now_iso
from inferloop.registry.storage import run

log = logging.getLogger(__name__)


class Retention:
    """Deletes artifacts, one by one or all but the newest ``keep_versions``."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @talks_to_redis
    def delete_version(
        self, name: str, version: int, *, reason: str, actor: str | None = None
    ) -> HistoryEntry | None:
        """Delete a version's artifact, keeping its metadata as a tombstone. Refused
        while an alias points at it or it is a rollback target. None if already gone."""
        b, k = self.backend, self.backend.keys
        what = f"delete {check_model_name(name)} v{version}"
        actor_, user = b.who(actor)
        answer = run(
            b.scripts.delete_artifact,
            [
                k.version(name, version),
                k.artifact(name, version),
                k.aliases(name),
                k.previous_champions(name),
                k.history(name),
            ],
            [version, actor_, user, reason, now_iso()],
        )
        if answer[0] == "unchanged":
            return None
        b.raise_for(answer, what, name, version)
        log.info("deleted the artifact of %s v%d by %s/%s: %s", name, version, actor_, user, reason)
        made = entries.plain_entry(answer[1], "delete")
        return entries.with_who(made, version, actor_, user, reason)

    @talks_to_redis
    def apply_retention(self, name: str, *, keep: int | None = None) -> list[int]:
        """Delete the artifacts of all but the newest ``keep`` versions (default: the
        ``keep_versions`` setting), never one an alias points at nor a rollback target.
        The versions whose artifacts were deleted, oldest first."""
        b = self.backend
        keep = b.keep_versions if keep is None else keep
        if keep < 1:
            raise InvalidVersionError(f"retention must keep at least one version, not {keep}")
        versions_key = b.keys.versions(check_model_name(name))
        raw: list[bytes] = cast(Any, b.client.zrange(versions_key, 0, -keep - 1))
        numbers = [int(text(v)) for v in raw]
        with b.client.pipeline(transaction=False) as pipe:
            for number in numbers:
                pipe.hexists(b.keys.version(name, number), "deleted_at")
            gone = pipe.execute()
        deleted = []
        for number in (n for n, tombstone in zip(numbers, gone, strict=True) if not tombstone):
            try:
                entry = self.delete_version(name, number, reason=f"retention: keep the last {keep}")
            except VersionStateError:
                continue
            if entry is not None:
                deleted.append(number)
        if deleted:
            log.info("retention of %s (keep %d) deleted the artifacts of %s", name, keep, deleted)
        return deleted
