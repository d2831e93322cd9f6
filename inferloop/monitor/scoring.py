"""The versions the monitor watches, by role, loaded and verified as a worker would.

- ``champion``: where the alias points.
- ``challenger``: where that alias points, if it is set.
- ``previous``: the champion the current one replaced, while the current one is on
  probation (``probation_s`` after the promotion that made it champion; a rollback
  starts no probation).

Each version is loaded through the registry (signature and digest checked) and made
ready by ``registry.serving.activate`` (its golden scores reproduced here). A version
that fails verification (``INTEGRITY_ERRORS``) is refused for good and left out; any
other registry error (a permission, an unexpected answer) is tried again after a
backoff. The others are still watched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import redis

from inferloop.backoff import Backoff
from inferloop.domains import DomainSpec
from inferloop.errors import RedisUnavailableError
from inferloop.registry import (
    CHAMPION,
    AliasTarget,
    GoldenMismatchError,
    IncompatibleLibraryError,
    IntegrityError,
    Registry,
    RegistryError,
    SchemaMismatchError,
)
from inferloop.registry.serving import ActiveModel, activate

log = logging.getLogger(__name__)

CHALLENGER = "challenger"
PREVIOUS = "previous"
ROLES: tuple[str, ...] = (CHAMPION, CHALLENGER, PREVIOUS)
REDIS_DOWN_ERRORS = (RedisUnavailableError, redis.ConnectionError, redis.TimeoutError)
# What the version itself fails: refused for good (another error is tried again).
INTEGRITY_ERRORS = (IntegrityError, GoldenMismatchError, SchemaMismatchError,
                    IncompatibleLibraryError)  # fmt: skip
# The longest wait before a version that failed otherwise is tried again.
RETRY_MAX_S = 60.0
# The history actions that start a probation: a move to a version from another (a
# rollback returns to one that served already).
PROMOTIONS = frozenset({"promote", "promote_challenger"})
# History entries read to find the promotion that started a probation.
HISTORY_DEPTH = 50


# Whether the previous champion is still watched beside the champion: (champion, previous).
KeepPrevious = Callable[[int, int], bool]


def role_targets(
    registry: Registry, name: str, probation_s: float, keep_previous: KeepPrevious
) -> dict[str, AliasTarget]:
    """Where each role points now (roles that point nowhere left out)."""
    targets: dict[str, AliasTarget] = {}
    champion = registry.resolve(name, CHAMPION)
    if champion is None:
        return targets
    targets[CHAMPION] = champion
    challenger = registry.resolve(name, CHALLENGER)
    if challenger is not None and challenger != champion:
        targets[CHALLENGER] = challenger
    previous = on_probation_from(registry, name, champion, probation_s)
    keep = previous is not None and previous != champion
    if previous is not None and keep and keep_previous(champion.version, previous.version):
        targets[PREVIOUS] = previous
    return targets


def on_probation_from(
    registry: Registry, name: str, champion: AliasTarget, probation_s: float
) -> AliasTarget | None:
    """The champion that ``champion`` replaced, if its promotion is recent enough."""
    if probation_s <= 0:
        return None
    for entry in registry.history(name, limit=HISTORY_DEPTH):
        if entry.alias != CHAMPION or entry.to_target != champion:
            continue
        if entry.action not in PROMOTIONS:
            return None
        age_s = (datetime.now(UTC) - entry.time).total_seconds()
        return entry.from_target if age_s < probation_s else None
    return None


class WatchedVersions:
    """The loaded model of each role; ``refresh`` follows the registry."""

    def __init__(
        self,
        registry: Registry,
        spec: DomainSpec,
        probation_s: float,
        keep_previous: KeepPrevious = lambda champion, previous: True,
    ) -> None:
        self._registry = registry
        self._keep_previous = keep_previous
        self._spec = spec
        self._probation_s = probation_s
        self._loaded: dict[AliasTarget, ActiveModel] = {}
        self._refused: set[AliasTarget] = set()
        # Targets that failed for another reason: when to try again, and their backoff.
        self._retry: dict[AliasTarget, tuple[float, Backoff]] = {}
        self.by_role: dict[str, ActiveModel] = {}
        self.refreshed_at = 0.0

    def refresh(self) -> bool:
        """Resolve every role again and load what is new; whether any role changed.

        Redis errors propagate (the caller keeps the models it has and retries).
        """
        targets = role_targets(
            self._registry, self._spec.name, self._probation_s, self._keep_previous
        )
        by_role = {}
        for role, target in targets.items():
            model = self._model(target)
            if model is not None:
                by_role[role] = model
        self.refreshed_at = time.monotonic()
        changed = _versions(by_role) != _versions(self.by_role)
        if changed:
            log.info(
                "%s: watching %s",
                self._spec.name,
                ", ".join(f"{r} v{m.version}" for r, m in by_role.items()) or "nothing",
            )
        self.by_role = by_role
        # Models of versions no role names any more are let go.
        keep = {m.target for m in by_role.values()}
        self._loaded = {t: m for t, m in self._loaded.items() if t in keep}
        return changed

    def _model(self, target: AliasTarget) -> ActiveModel | None:
        if target in self._loaded:
            return self._loaded[target]
        if target in self._refused or time.monotonic() < self._retry.get(target, (0.0,))[0]:
            return None
        started = time.monotonic()
        try:
            loaded = self._registry.load(self._spec.name, target.version, digest=target.digest)
            model = activate(loaded, self._spec)
        except REDIS_DOWN_ERRORS:
            raise
        except INTEGRITY_ERRORS as exc:
            self._refused.add(target)
            log.error("%s v%s refused: %s", self._spec.name, target.version, exc)
            return None
        except RegistryError as exc:
            self._retry_later(target, exc)
            return None
        self._retry.pop(target, None)
        log.info(
            "%s v%s loaded and verified in %.2f s; scoring with %s",
            self._spec.name, target.version, time.monotonic() - started, model.scorer.name,
        )  # fmt: skip
        self._loaded[target] = model
        return model

    def _retry_later(self, target: AliasTarget, exc: RegistryError) -> None:
        backoff = self._retry.get(target, (0.0, Backoff(RETRY_MAX_S)))[1]
        delay_s = backoff.next()
        self._retry[target] = (time.monotonic() + delay_s, backoff)
        log.warning("%s v%s not loaded (tried again in %.1f s): %s",
                    self._spec.name, target.version, delay_s, exc)  # fmt: skip

    def versions(self) -> dict[int, ActiveModel]:
        """The watched models by version number (a version in two roles once)."""
        return {m.version: m for m in self.by_role.values()}

    def role_of(self, version: int) -> str | None:
        """The first role ``version`` holds, if any."""
        for role, model in self.by_role.items():
            if model.version == version:
                return role
        return None


def _versions(by_role: Mapping[str, ActiveModel]) -> dict[str, int]:
    return {role: m.version for role, m in by_role.items()}
