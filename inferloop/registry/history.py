"""History entries: read from a model's history stream, or built from a script's answer.

A move's script answers ``ok``, the stream id, from, to (and, for a promotion, whether
it moved a rolled-back version); the entry it returns carries who made the move too.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from inferloop.registry.entities import AliasTarget, HistoryEntry


def entry(entry_id: str, fields: Mapping[str, str]) -> HistoryEntry:
    """The history entry of stream id ``entry_id`` with ``fields``."""
    millis = int(entry_id.split("-", maxsplit=1)[0])
    version = fields.get("version") or ""
    return HistoryEntry(
        id=entry_id,
        time=datetime.fromtimestamp(millis / 1000, UTC),
        action=fields.get("action", ""),
        alias=fields.get("alias") or None,
        from_target=AliasTarget.decode(fields.get("from")),
        to_target=AliasTarget.decode(fields.get("to")),
        version=int(version) if version.isdigit() else None,
        actor=fields.get("actor", ""),
        user=fields.get("user", ""),
        reason=fields.get("reason", ""),
        reviewed=fields.get("reviewed") == "1",
    )


def move_entry(answer: list[str], action: str, alias: str) -> HistoryEntry:
    """The entry of a move's answer: ok, stream id, from, to."""
    return entry(answer[1], {"action": action, "alias": alias, "from": answer[2], "to": answer[3]})


def plain_entry(entry_id: str, action: str) -> HistoryEntry:
    """The entry of an action that moves no alias (reject, delete)."""
    return entry(entry_id, {"action": action})


def was_reviewed(answer: list[str]) -> bool:
    """Whether a move's answer says it moved a rolled-back version (fifth, '1')."""
    return len(answer) > 4 and answer[4] == "1"


def with_who(
    made: HistoryEntry,
    version: int,
    actor: str,
    user: str,
    reason: str,
    *,
    reviewed: bool = False,
) -> HistoryEntry:
    """``made`` with its version, actor, Redis user, reason and review flag."""
    return HistoryEntry(
        id=made.id,
        time=made.time,
        action=made.action,
        alias=made.alias,
        from_target=made.from_target,
        to_target=made.to_target,
        version=version,
        actor=actor,
        user=user,
        reason=reason,
        reviewed=reviewed,
    )
