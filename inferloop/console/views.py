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
from inferloop.ops.dlq import DlqPage, ReasonCounts, StoredLetter, count_reasons, page, read_letter
from inferloop.ops.lag import GroupLag, Throughput, group_lag, throughput
from inferloop.ops.monitor_history import (
    DriftAlarm,
    HistoryPoint,
    KeptAction,
    read_actions,
    read_alarms,
    read_history,
)
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
    letters: Read[ReasonCounts]
    retrain: Read[RetrainView]
    monitor: Read[dict[str, Any] | None]
    floors: list[FloorRow]
    throughput: Read[Throughput]


# The overview counts dead letters by reason among this many newest records per partition.
OVERVIEW_LETTERS_SCANNED = 200


def overview(settings: Settings, registry: Registry, domain: Domain) -> DomainOverview:
    """One domain's champion and challenger, lag and throughput, dead letters, retrain and
    live quality against its floors."""
    lag = attempt("lag", lambda: group_lag(settings, domain))
    monitor = attempt("monitor status", lambda: monitor_status(registry, domain))
    return DomainOverview(
        domain=domain,
        aliases=overview_aliases(registry, domain),
        lag=lag,
        letters=attempt(
            "dead letters",
            lambda: count_reasons(settings, domain, last=OVERVIEW_LETTERS_SCANNED),
        ),
        retrain=attempt(
            "retrain status", lambda: read_retrain(registry.client, registry.keys, domain)
        ),
        monitor=monitor,
        floors=floors(settings, domain, monitor.value),
        throughput=attempt("throughput", lambda: throughput(settings, domain)),
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


# Letters per dead-letter page.
LETTERS_PER_PAGE = 50


def parse_offsets(text: str | None) -> dict[int, int] | None:
    """A page cursor ``"0:120,1:98"`` (partition:offset) as a dict; None when absent."""
    if not text:
        return None
    pairs = (part.split(":", 1) for part in text.split(",") if part)
    return {int(p): int(o) for p, o in pairs}


def format_offsets(offsets: dict[int, int]) -> str:
    """The cursor of :func:`parse_offsets`."""
    return ",".join(f"{p}:{o}" for p, o in sorted(offsets.items()))


def letters(
    settings: Settings, domain: Domain, reason: str | None, before: dict[int, int] | None
) -> tuple[DlqPage, ReasonCounts]:
    """One page of the domain's dead letters (of ``reason``) before ``before``, and the
    counts by reason among the newest records: two bounded reads."""
    shown = page(settings, domain, before=before, per_page=LETTERS_PER_PAGE, reason=reason)
    return shown, count_reasons(settings, domain)


def letter(settings: Settings, domain: Domain, coordinates: str) -> StoredLetter | None:
    """One dead letter by its ``partition:offset`` (that one record read), or None."""
    partition, _, offset = coordinates.partition(":")
    if not (partition.isdigit() and offset.isdigit()):
        return None
    return read_letter(settings, domain, int(partition), int(offset))


def live_history(registry: Registry, domain: str, version: int) -> list[HistoryPoint]:
    """The monitor's points of ``version``'s live figures, oldest first."""
    return read_history(registry.client, registry.keys, domain, version)


def drift_alarms(registry: Registry, domain: str) -> list[DriftAlarm]:
    """The domain's kept drift alarms, newest first."""
    return read_alarms(registry.client, registry.keys, domain)


def monitor_actions(registry: Registry, domain: str) -> list[KeptAction]:
    """The domain's kept floor and probation alarms and monitor actions, newest first."""
    return read_actions(registry.client, registry.keys, domain)


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


# The figures of a monitor window shown, in order; an interval reads "value [low, high]".
_FIGURES = ("n", "positives", "precision", "recall", "f1", "target_value", "auprc")


def figure_cells(figures: dict[str, Any]) -> list[tuple[str, str]]:
    """A window's live figures as (name, text) pairs; the target figure under its name."""
    cells = []
    for name in _FIGURES:
        if name not in figures:
            continue
        label = str(figures.get("target", name)) if name == "target_value" else name
        cells.append((label, _figure_text(figures[name])))
    return cells


def _figure_text(value: Any) -> str:
    if isinstance(value, dict):
        point, low, high = (value.get(k) for k in ("value", "low", "high"))
        if point is None:
            return "—"
        bounds = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
        return f"{point:.3f}{bounds}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


@dataclass(frozen=True)
class FloorRow:
    """One live floor of a domain against its champion's figure: the value over the
    window by positives, and, when the monitor's last evaluation found this floor
    breached (``floor_breach`` in its status), the window it was breached on."""

    figure: str
    bound: str  # ">=" or "<="
    floor: float
    value: float | None
    breached: str | None = None  # "positives" or "time": the alarm's window

    @property
    def holds(self) -> bool | None:
        """Whether the champion's figure keeps to the floor (None: not measured yet)."""
        if self.value is None:
            return None
        return self.value >= self.floor if self.bound == ">=" else self.value <= self.floor

    @property
    def verdict(self) -> str:
        """What the row says: holds, BELOW (with the window of the evidence), below the
        floor without evidence yet, or not measured yet."""
        if self.breached is not None:
            return f"BELOW (window by {self.breached})"
        if self.holds is None:
            return "not measured yet"
        return "holds" if self.holds else "below, without evidence yet"


def floors(settings: Settings, domain: Domain, status: dict[str, Any] | None) -> list[FloorRow]:
    """The domain's live floors (``monitor.<domain>_live_*``) beside the champion's figures."""
    section = settings.monitor
    wanted = [
        ("f1", ">=", getattr(section, f"{domain}_live_floor_f1", None), "f1"),
        ("auprc", ">=", getattr(section, f"{domain}_live_floor_auprc", None), "auprc"),
        (
            "ham_flagged",
            "<=",
            getattr(section, f"{domain}_live_max_ham_flagged", None),
            "target_value",
        ),
        (
            "fraud_recall",
            ">=",
            getattr(section, f"{domain}_live_floor_fraud_recall", None),
            "target_value",
        ),
    ]
    champion = ((status or {}).get("roles") or {}).get("champion") or {}
    window = (champion.get("windows") or {}).get("positives") or {}
    breach = (status or {}).get("floor_breach") or {}
    if breach.get("version") != champion.get("version"):
        breach = {}
    rows = []
    for figure, bound, floor, field_name in wanted:
        if floor is None:
            continue
        measured = window.get(field_name)
        value = measured.get("value") if isinstance(measured, dict) else None
        breached = breach.get("window") if field_name in (breach.get("breached") or {}) else None
        rows.append(FloorRow(figure, bound, float(floor), value, breached))
    return rows


def predictions_count(registry: Registry, domain: str, version: int) -> dict[str, int]:
    """The monitor's count of ``version``'s served predictions, per predicted class."""
    prefix = f"predicted:{int(version)}:"
    raw = registry.client.hgetall(registry.keys.monitor_counts(domain))
    counts = {}
    for name, value in raw.items():
        text = name.decode() if isinstance(name, bytes) else str(name)
        if text.startswith(prefix):
            counts[text[len(prefix) :]] = int(value)
    return dict(sorted(counts.items()))
