"""Watch a model's alias: pub/sub notices, with catch-up after a disconnect.

Pub/sub delivers at most once: a notice published while the watcher's connection was
down is lost. So the watcher treats a notice only as a cue and the alias itself as the
truth: every (re)subscription and every notice is followed by one read of the alias,
compared with the last target seen. A promotion made while the watcher was away is
therefore seen as soon as it is subscribed again.

A watcher may follow other aliases of the model with the main one (``also``, the
worker's ``challenger``): all are read in one ``HMGET``, so one atomic move of several
(``promote_challenger``) is seen as one change, never half of it.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal, cast

import redis
from redis.client import PubSub

from inferloop.registry.entities import CHAMPION, AliasTarget, check_alias, check_model_name
from inferloop.registry.errors import RegistryUnavailableError

if TYPE_CHECKING:
    from inferloop.registry.registry import Registry

log = logging.getLogger(__name__)


class _Unset(enum.Enum):
    UNSET = 0


UNSET = _Unset.UNSET
Unset = Literal[_Unset.UNSET]

# While Redis is unreachable, a waiting watcher tries to resubscribe this often.
RETRY_INTERVAL_S = 1.0


class ChampionWatcher:
    """Tells when an alias (``champion`` by default) of a model moved.

    ``wait(timeout_s)`` returns the new target when the alias moved away from the last
    target seen, else None after ``timeout_s``. It never raises for an unreachable Redis:
    it keeps retrying, and ``healthy`` / ``last_error`` say how it is going, so a worker
    keeps serving with the model it has. ``also`` names other aliases to follow, with
    their last targets seen; ``also`` holds where they point after each read.
    """

    def __init__(
        self,
        registry: Registry,
        name: str,
        alias: str = CHAMPION,
        *,
        current: AliasTarget | Unset | None = UNSET,
        check_interval_s: float | None = None,
        also: Mapping[str, AliasTarget | None] | None = None,
    ) -> None:
        self.name = check_model_name(name)
        self.alias = check_alias(alias)
        self._registry = registry
        self._channel = registry.keys.notices(name)
        self.also = {check_alias(a): target for a, target in (also or {}).items()}
        # With no baseline given, where the alias is now; an unreachable Redis is an error
        # here (fail fast at start-up), never later.
        self.current = registry.resolve(name, alias) if current is UNSET else current
        self._check_interval_s = check_interval_s
        self._next_check = time.monotonic() + (check_interval_s or 0.0)
        self._pubsub: PubSub | None = None
        self._resync = False
        self.healthy = False
        self.last_error: str | None = None
        # Times the connection was lost (each outage counted once).
        self.disconnects = 0

    def wait(self, timeout_s: float) -> AliasTarget | None:
        """The alias's new target once it moved, or None when ``timeout_s`` passed."""
        deadline = time.monotonic() + timeout_s
        while True:
            changed = self._step(max(0.0, deadline - time.monotonic()))
            if changed is not None or time.monotonic() >= deadline:
                return changed

    def close(self) -> None:
        """Unsubscribe and close the connection."""
        if self._pubsub is not None:
            self._pubsub.close()
            self._pubsub = None

    def __enter__(self) -> ChampionWatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _step(self, timeout_s: float) -> AliasTarget | None:
        try:
            pubsub = self._pubsub or self._subscribe()
            if self._resync or self._check_due():
                return self._reread()
            message = pubsub.get_message(timeout=timeout_s)
        except (redis.ConnectionError, redis.TimeoutError, RegistryUnavailableError) as exc:
            self._lost(exc)
            time.sleep(min(timeout_s, RETRY_INTERVAL_S))
            return None
        if message is not None and message["type"] in ("subscribe", "message"):
            # Subscribed (again): catch up. A notice: the alias is the truth, read it.
            self._resync = True
        return None

    def _subscribe(self) -> PubSub:
        pubsub: PubSub = self._registry.client.pubsub()  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(self._channel)
        except (redis.ConnectionError, redis.TimeoutError):
            pubsub.close()
            raise
        self._pubsub = pubsub
        return pubsub

    def _check_due(self) -> bool:
        if self._check_interval_s is None or time.monotonic() < self._next_check:
            return False
        self._next_check = time.monotonic() + self._check_interval_s
        return True

    def _read(self) -> tuple[AliasTarget | None, dict[str, AliasTarget | None]]:
        """Where the alias and those in ``also`` point: one round trip."""
        if not self.also:
            return self._registry.resolve(self.name, self.alias), {}
        key = self._registry.keys.aliases(self.name)
        raw = cast(list[bytes | None], self._registry.client.hmget(key, [self.alias, *self.also]))
        main, *others = (AliasTarget.decode(value) for value in raw)
        return main, dict(zip(self.also, others, strict=True))

    def _reread(self) -> AliasTarget | None:
        target, also = self._read()
        self._resync = False
        for alias, moved in also.items():
            if moved != self.also[alias]:
                log.info("%s@%s moved from %s to %s", self.name, alias, self.also[alias], moved)
        self.also = also
        if not self.healthy:
            if self.last_error is not None:
                log.info("watching %s@%s again after: %s", self.name, self.alias, self.last_error)
            self.healthy = True
        if target == self.current:
            return None
        log.info("%s@%s moved from %s to %s", self.name, self.alias, self.current, target)
        self.current = target
        return target

    def _lost(self, exc: Exception) -> None:
        if self.healthy or self.last_error is None:
            log.warning(
                "watching %s@%s: connection lost (%s); retrying every %.0f s",
                self.name,
                self.alias,
                exc,
                RETRY_INTERVAL_S,
            )
            self.disconnects += 1
        self.healthy = False
        self.last_error = str(exc)
        self.close()
