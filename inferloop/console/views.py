"""What each page shows, read from the registry, the monitor's and retrain's status keys,
the dead-letter topic and Kafka's group offsets.

Each reader returns plain values for a template. A source that cannot be read (Kafka
down, a topic not created yet) is shown as its error on the page rather than failing
it: the console is most needed when part of the loop is broken.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import redis
from kafka.errors import KafkaError

from inferloop.errors import InferloopError
from inferloop.ops.dlq import DlqSummary, StoredLetter, iter_letters, show
from inferloop.ops.lag import GroupLag, group_lag
from inferloop.ops.retrain_status import RetrainView, read_retrain
from inferloop.registry import Registry
from inferloop.registry.entities import HistoryEntry, ModelVersion
from inferloop.registry.errors import RegistryError
from inferloop.settings import Domain, Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

# A dead letter's value is shown up to this many characters, as text, never rendered.
LETTER_PREVIEW_CHARS = 4000


@dataclass(frozen=True)
class Read(Generic[T]):
    """A value read, or the one-line error that kept it from being read."""

    value: T | None
    error: str | None = None


def attempt(what: str, read: Callable[[], T]) -> Read[T]:
    """Run ``read``; an inferloop, Kafka or Redis failure becomes the page's error line."""
    try:
        return Read(read())
    except (InferloopError, KafkaError, redis.RedisError, OSError, ValueError) as exc:
        log.warning("console: reading %s failed: %s", what, exc)
        return Read(None, f"{what}: {type(exc).__name__}: {exc}")


def monitor_status(registry: Registry, domain: str) -> dict[str, Any] | None:
    """The monitor's last evaluation of ``domain`` (its JSON), if any."""
    raw = registry.client.get(registry.keys.monitor_status(domain))
    return None if raw is None else dict(json.loads(raw))


def live_by_version(status: dict[str, Any] | None) -> dict[int, dict[str, Any]]:
    """The monitor's figures of each watched version, by version number."""
    roles = (status or {}).get("roles", {})
    return {int(r["version"]): r for r in roles.values() if "version" in r}


@dataclass(frozen=True)
class DomainOverview:
    """Everything the overview shows of one domain."""

    domain: str
    aliases: dict[str, int]
    lag: Read[GroupLag]
    letters: Read[DlqSummary]
    retrain: Read[RetrainView]
    monitor: Read[dict[str, Any] | None]


def overview(settings: Settings, registry: Registry, domain: Domain) -> DomainOverview:
    """One domain's champion and challenger, lag, dead letters, retrain and live quality."""
    model = attempt("registry", lambda: registry.get_model(domain))
    aliases = {a: t.version for a, t in model.value.aliases.items()} if model.value else {}
    return DomainOverview(
        domain=domain,
        aliases=aliases,
        lag=attempt("lag", lambda: group_lag(settings, domain)),
        letters=attempt("dead letters", lambda: show(settings, domain, limit=0)),
        retrain=attempt(
            "retrain status", lambda: read_retrain(registry.client, registry.keys, domain)
        ),
        monitor=attempt("monitor status", lambda: monitor_status(registry, domain)),
    )


def overview_aliases(registry: Registry, domain: str) -> dict[str, int]:
    """Where the domain's aliases point (empty when it has no model yet)."""
    try:
        model = registry.get_model(domain)
    except RegistryError:
        return {}
    return {alias: target.version for alias, target in model.aliases.items()}


def versions(registry: Registry, domain: str) -> list[ModelVersion]:
    """Every version of the domain's model, newest first (none when it has no model)."""
    try:
        return list(reversed(registry.list_versions(domain)))
    except RegistryError:
        return []


def gate_reason(version: ModelVersion) -> str:
    """The gate's decision and reason, as the retrain job recorded them."""
    gate = version.params.get("gate")
    decision = version.tags.get("decision", "")
    reason = gate.get("reason", "") if isinstance(gate, dict) else ""
    return f"{decision}: {reason}" if decision and reason else decision or reason


def history(registry: Registry, domain: str, *, limit: int = 500) -> list[HistoryEntry]:
    """The model's history, newest first (none when it has no model)."""
    try:
        return registry.history(domain, limit=limit)
    except RegistryError:
        return []


def letters(settings: Settings, domain: Domain, reason: str | None, limit: int = 200) -> DlqSummary:
    """The domain's dead letters by reason, and the first ``limit`` (of ``reason``)."""
    return show(settings, domain, reasons=(reason,) if reason else (), limit=limit)


def letter(settings: Settings, domain: Domain, coordinates: str) -> StoredLetter | None:
    """One dead letter by its ``partition:offset``, or None."""
    for found in iter_letters(settings, domain):
        if found.coordinates == coordinates:
            return found
    return None


def preview(data: bytes | None) -> str:
    """A letter's bytes as text, cut to :data:`LETTER_PREVIEW_CHARS` (escaped by the template)."""
    if data is None:
        return "(none)"
    text = data.decode("utf-8", errors="replace")
    if len(text) > LETTER_PREVIEW_CHARS:
        return (
            f"{text[:LETTER_PREVIEW_CHARS]}… ({len(text) - LETTER_PREVIEW_CHARS} more characters)"
        )
    return text
