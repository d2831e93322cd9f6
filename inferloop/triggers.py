"""Retrain triggers: the stream entry's schema, and how any part publishes one.

A trigger asks the retrain service to run one domain now. Operators send them from the
CLI, the monitor sends them when a champion falls below its live floor or drifts; the
retrain service reads them (``inferloop.retrain.triggers``). This schema lives in the
core so that a sender never imports retrain.

A trigger id is chosen by the sender: random for an operator, deterministic for the
monitor (``monitor-<domain>-<reason>-<window>``), so that one reason raises one retrain
per rate-limit window. :func:`publish_once` adds such an id at most once while its
sent marker lives (``dedupe_s``); the service also skips a trigger whose outcome is stored.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from inferloop.errors import InferloopError
from inferloop.keys import Keys
from inferloop.settings import DOMAINS, Domain

log = logging.getLogger(__name__)

# numpy's random states take seeds in [0, 2**32).
MAX_SEED = 2**32 - 1
# The ``requested_by`` of the monitor's triggers (its runs are recorded as trigger
# "monitor", apart from operators').
MONITOR = "monitor"


class TriggerEntryError(InferloopError): ...


@dataclass(frozen=True)
class Trigger:
    """One request: run ``domain`` now."""

    trigger_id: str
    domain: Domain
    force: bool
    requested_by: str
    requested_at: str
    seed: int | None = None
    # Pipeline parameters of this run (``step__parameter``: JSON value).
    params: Mapping[str, Any] = field(default_factory=dict)
    entry_id: str = ""  # the stream entry it arrived as

    def fields(self) -> dict[str, str]:
        """The stream entry's fields."""
        fields = {
            "trigger_id": self.trigger_id,
            "domain": self.domain,
            "force": "1" if self.force else "0",
            "requested_by": self.requested_by,
            "requested_at": self.requested_at,
        }
        if self.seed is not None:
            fields["seed"] = str(self.seed)
        if self.params:
            fields["params"] = json.dumps(dict(self.params), sort_keys=True)
        return fields

    @classmethod
    def from_entry(cls, entry_id: str, fields: dict[str, str]) -> Trigger:
        """The trigger a stream entry holds; TriggerEntryError when it holds no valid one."""
        domain = fields.get("domain", "")
        trigger_id = fields.get("trigger_id", "")
        raw_seed = fields.get("seed")
        seed = None if raw_seed is None else _seed(raw_seed)
        params = _params(fields.get("params"))
        valid_seed = raw_seed is None or seed is not None
        if domain not in DOMAINS or not trigger_id or not valid_seed or params is None:
            raise TriggerEntryError(f"trigger entry {entry_id} is not valid: {fields!r}")
        return cls(
            trigger_id=trigger_id,
            domain=domain,
            force=fields.get("force") == "1",
            requested_by=fields.get("requested_by", "?"),
            requested_at=fields.get("requested_at", ""),
            seed=seed,
            params=params,
            entry_id=entry_id,
        )


def _seed(text: str) -> int | None:
    """The seed an entry carries; None when it is not one (not an integer, out of range)."""
    try:
        seed = int(text)
    except ValueError:
        # str.isdigit() is no guard: "²" is a digit that int() refuses.
        return None
    return seed if 0 <= seed <= MAX_SEED else None


def _params(text: str | None) -> dict[str, Any] | None:
    """The parameters an entry carries ({} when none); None when they are not valid."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def new_trigger_id() -> str:
    """A fresh random trigger id (no colons, so it fits in a key)."""
    return uuid.uuid4().hex


def publish(client: redis.Redis, keys: Keys, trigger: Trigger) -> str:
    """Add ``trigger`` to the retrain stream; return its entry id."""
    fields: dict[FieldT, EncodableT] = dict(trigger.fields().items())
    entry = client.xadd(keys.retrain_triggers(), fields)
    log.info(
        "trigger %s for %s sent by %s", trigger.trigger_id, trigger.domain, trigger.requested_by
    )
    return entry.decode() if isinstance(entry, bytes) else str(entry)


def publish_once(
    client: redis.Redis, keys: Keys, trigger: Trigger, *, dedupe_s: float
) -> str | None:
    """``publish`` a deterministic id at most once while its sent marker lives
    (``dedupe_s``); the entry id, or None when the id was sent already.

    The marker is set (SET NX) before the entry is added, so a sender that dies between
    the two loses that one trigger rather than running it twice, and raises the next
    one in its next rate-limit window. Operators' random ids need no marker (and their
    ACL has no SET): they use ``publish``.
    """
    marker = keys.retrain_sent(trigger.trigger_id)
    if not client.set(marker, trigger.domain, nx=True, ex=max(1, math.ceil(dedupe_s))):
        log.info("trigger %s for %s was sent already", trigger.trigger_id, trigger.domain)
        return None
    return publish(client, keys, trigger)
