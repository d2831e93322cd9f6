"""What an operator does from the console, each with a reason and their name as actor.

Alias moves go through the registry (recorded in its history with ``console:<name>``
as the actor); a retrain goes through the trigger stream; a redrive through Kafka.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from inferloop.console.errors import ActionRefusedError
from inferloop.ops.dlq import RedriveResult, redrive
from inferloop.registry import Registry
from inferloop.registry.entities import HistoryEntry
from inferloop.settings import Domain, Settings
from inferloop.triggers import Trigger, new_trigger_id, publish

log = logging.getLogger(__name__)

CHALLENGER = "challenger"


def actor(name: str) -> str:
    """The actor recorded for a person acting through the console."""
    return f"console:{name}"


def _reason(reason: str) -> str:
    text = " ".join(reason.split())
    if not text:
        raise ActionRefusedError("every action needs a reason")
    return text[:500]


def promote(
    registry: Registry, domain: Domain, version: int, reason: str, name: str
) -> HistoryEntry:
    """Make ``version`` the champion, if the champion is still where the page showed it."""
    current = registry.resolve(domain)
    log.info("console: %s promotes %s v%d", name, domain, version)
    return registry.promote(
        domain, version, expected_current=current, reason=_reason(reason), actor=actor(name)
    )


def rollback(registry: Registry, domain: Domain, reason: str, name: str) -> HistoryEntry:
    """Move the champion back to the one it replaced."""
    log.info("console: %s rolls %s back", name, domain)
    return registry.rollback(domain, _reason(reason), actor=actor(name))


def retire_challenger(registry: Registry, domain: Domain, reason: str, name: str) -> HistoryEntry:
    """Remove the ``challenger`` alias (workers stop scoring it in shadow)."""
    current = registry.resolve(domain, CHALLENGER)
    if current is None:
        raise ActionRefusedError(f"{domain} has no challenger")
    log.info("console: %s retires %s challenger %s", name, domain, current)
    return registry.remove_alias(
        domain, CHALLENGER, expected_current=current, reason=_reason(reason), actor=actor(name)
    )


def trigger_retrain(registry: Registry, domain: Domain, reason: str, name: str) -> str:
    """Queue a retrain of ``domain`` for the retrain service; the trigger's id."""
    trigger = Trigger(
        trigger_id=new_trigger_id(),
        domain=domain,
        force=False,
        requested_by=actor(name),
        requested_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
    )
    publish(registry.client, registry.keys, trigger)
    log.info(
        "console: %s triggered retrain %s of %s: %s",
        name,
        trigger.trigger_id,
        domain,
        _reason(reason),
    )
    return trigger.trigger_id


def redrive_letters(
    settings: Settings, domain: Domain, coordinates: list[str], reason: str, name: str
) -> RedriveResult:
    """Republish the chosen dead letters to their source topic."""
    if not coordinates:
        raise ActionRefusedError("choose the letters to redrive")
    why = _reason(reason)
    result = redrive(settings, domain, coordinates=coordinates)
    log.info("console: %s redrove %d letters of %s (%d skipped): %s",
             name, result.sent, domain, result.skipped, why)  # fmt: skip
    return result
