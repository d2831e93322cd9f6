"""What each page shows, read from the registry, the monitor's and retrain's status keys,
the dead-letter topic and Kafka's group offsets.

Each reader returns plain values for a template. A source that cannot be read (Kafka
down, a topic not created yet) is shown as its error on the page rather than failing
it: the console is most needed when part of the loop is broken.
"""

from __future__ import annotations

import json
import logging
import threading
import time
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
    floors: list[FloorRow]
    rates: dict[int, float]


def overview(
    settings: Settings, registry: Registry, domain: Domain, throughput: Throughput
) -> DomainOverview:
    """One domain's champion and challenger, lag and throughput, dead letters, retrain and
    live quality against its floors."""
    lag = attempt("lag", lambda: group_lag(settings, domain))
    monitor = attempt("monitor status", lambda: monitor_status(registry, domain))
    return DomainOverview(
        domain=domain,
        aliases=overview_aliases(registry, domain),
        lag=lag,
        letters=attempt("dead letters", lambda: show(settings, domain, limit=0)),
        retrain=attempt(
            "retrain status", lambda: read_retrain(registry.client, registry.keys, domain)
        ),
        monitor=monitor,
        floors=floors(settings, domain, monitor.value),
        rates=throughput.rates(lag.value),
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
    """One live floor of a domain against its champion's figure on the positives window."""

    figure: str
    bound: str  # ">=" or "<="
    floor: float
    value: float | None

    @property
    def holds(self) -> bool | None:
        """Whether the champion's figure keeps to the floor (None: not measured yet)."""
        if self.value is None:
            return None
        return self.value >= self.floor if self.bound == ">=" else self.value <= self.floor


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
    rows = []
    for figure, bound, floor, field_name in wanted:
        if floor is None:
            continue
        measured = window.get(field_name)
        value = measured.get("value") if isinstance(measured, dict) else None
        rows.append(FloorRow(figure, bound, float(floor), value))
    return rows


class Throughput:
    """Events per second on each partition, from the end offsets of two page views."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, dict[int, int]]] = {}
        self._lock = threading.Lock()

    def rates(self, lag: GroupLag | None, now_s: float | None = None) -> dict[int, float]:
        """Per partition, the events appended since the previous call, per second."""
        if lag is None:
            return {}
        now_s = time.monotonic() if now_s is None else now_s
        ends = {p.partition: p.end for p in lag.partitions}
        with self._lock:
            before = self._last.get(lag.topic)
            self._last[lag.topic] = (now_s, ends)
        if before is None or now_s <= before[0]:
            return {}
        elapsed = now_s - before[0]
        return {p: max(end - before[1].get(p, end), 0) / elapsed for p, end in ends.items()}


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
