"""Alias moves: set, remove, promote the challenger, roll back; and rejections.

Every move is one compare-and-set script that also appends to the history stream and
publishes a notice. A move to an alias workers serve is verified first as a worker
would verify it (``verified``), and the script moves only if the stored digest is still
the verified one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

from inferloop.domains import UnknownDomainError, get_domain
from inferloop.registry import history as entries
from inferloop.registry import serving
from inferloop.registry.backend import Backend, talks_to_redis
from inferloop.registry.entities import (
    CHALLENGER,
    CHAMPION,
    AliasTarget,
    HistoryEntry,
    LockGuard,
    check_alias,
    check_model_name,
)
from inferloop.registry.errors import (
    AliasNotFoundError,
    NoPreviousChampionError,
    PromotionConflictError,
    RegistryError,
    RegistryUnavailableError,
    VersionStateError,
)
from inferloop.registry.loader import Loader
from inferloop.registry.storage import run

log = logging.getLogger(__name__)

# The aliases workers serve: moved only to a version that verifies.
SERVED_ALIASES = frozenset({CHAMPION, CHALLENGER})

# verify(name, version, digest, what) -> the digest verified; raises if it does not.
Verify = Callable[[str, int, str | None, str], str]


@contextmanager
def refusing(what: str, *, unknown_domain: type[RegistryError]) -> Iterator[None]:
    """Re-raise a registry error as its own type, its message naming what is refused
    (``refusing <what>: ...``); an unknown domain as ``unknown_domain``. Redis being
    unreachable passes unchanged: it refuses nothing."""
    try:
        yield
    except RegistryUnavailableError:
        raise
    except RegistryError as exc:
        raise type(exc)(f"refusing {what}: {exc}") from exc
    except UnknownDomainError as exc:
        raise unknown_domain(f"refusing {what}: {exc}") from exc


def verified(loader: Loader, name: str, version: int, digest: str | None, what: str) -> str:
    """The artifact digest of ``version`` once it verified as a worker checks it:
    signature, manifest, digest (``digest`` too, when given), scikit-learn version,
    then the golden scores through the domain's own validation and fastest scorer.

    Read fresh from Redis (never the load cache: the bytes may have changed since).
    A failure is re-raised as its own type, its message naming the move refused.
    """
    with refusing(what, unknown_domain=VersionStateError):
        loaded = loader.load_uncached(name, version, digest)
        serving.activate(loaded, get_domain(loaded.version.domain))
    log.info("verified %s before moving it: %s", what, loaded.version.artifact_digest[:12])
    return loaded.version.artifact_digest


class Moves:
    """The alias moves and rejections of one backend; ``verify`` checks a target first."""

    def __init__(self, backend: Backend, verify: Verify) -> None:
        self.backend = backend
        self._verify = verify

    @talks_to_redis
    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        expected_current: AliasTarget | int | None,
        reason: str,
        actor: str | None = None,
        guard: LockGuard | None = None,
        digest: str | None = None,
        reviewed: bool = False,
    ) -> HistoryEntry:
        """Compare-and-set ``alias`` to ``version``; see ``Registry.set_alias``."""
        b, k, expected = self.backend, self.backend.keys, _expected(expected_current)
        what = f"{check_model_name(name)}@{check_alias(alias)} -> v{version}"
        if alias in SERVED_ALIASES:
            digest = self._verify(name, version, digest, what)
        current_number = int(expected.split(" ")[0]) if expected else version
        actor_, user = b.who(actor)
        keys = [
            k.aliases(name),
            k.version(name, version),
            k.version(name, current_number),
            k.previous_champions(name),
            k.history(name),
            guard.key if guard else k.aliases(name),
        ]
        args = [alias, version, expected, guard.token if guard else "", digest or ""]
        args += [actor_, user, reason, k.notices(name), b.keep_versions, _flag(reviewed)]
        answer = run(b.scripts.set_alias, keys, args)
        b.raise_for(answer, what, name, version)
        entry = entries.move_entry(answer, "promote" if alias == CHAMPION else "set_alias", alias)
        log.info("moved %s (from %s) by %s/%s: %s", what, entry.from_target, actor_, user, reason)
        return entries.with_who(
            entry, version, actor_, user, reason, reviewed=entries.was_reviewed(answer)
        )

    @talks_to_redis
    def promote_challenger(
        self,
        name: str,
        *,
        reason: str,
        actor: str | None = None,
        expected_champion: AliasTarget | int | None = None,
        expected_challenger: AliasTarget | int | None = None,
        reviewed: bool = False,
    ) -> HistoryEntry:
        """Make the challenger the champion; see ``Registry.promote_challenger``."""
        b, k = self.backend, self.backend.keys
        with b.client.pipeline(transaction=False) as pipe:
            pipe.hget(k.aliases(check_model_name(name)), CHALLENGER)
            pipe.hget(k.aliases(name), CHAMPION)
            challenger_raw, champion_raw = pipe.execute()
        challenger, champion = AliasTarget.decode(challenger_raw), AliasTarget.decode(champion_raw)
        if challenger is None:
            raise AliasNotFoundError(f"{name}@challenger is not set")
        what = f"{name}@champion -> v{challenger.version} (the challenger)"
        # The script then moves only if the challenger is still the one read here.
        _check_expected(challenger, expected_challenger, f"{what}: the challenger")
        self._verify(name, challenger.version, challenger.digest, what)
        expected = champion.encode() if champion else ""
        if expected_champion is not None:
            expected = _expected(expected_champion)
        current_number = int(expected.split(" ")[0]) if expected else challenger.version
        actor_, user = b.who(actor)
        keys = [
            k.aliases(name),
            k.version(name, challenger.version),
            k.version(name, current_number),
            k.previous_champions(name),
            k.history(name),
        ]
        args = [challenger.encode(), expected, actor_, user, reason, k.notices(name)]
        args += [str(b.keep_versions), _flag(reviewed)]
        answer = run(b.scripts.promote_challenger, keys, args)
        b.raise_for(answer, what, name, challenger.version)
        entry = entries.move_entry(answer, "promote_challenger", CHAMPION)
        log.info("moved %s (from %s) by %s/%s: %s", what, entry.from_target, actor_, user, reason)
        return entries.with_who(
            entry, challenger.version, actor_, user, reason, reviewed=entries.was_reviewed(answer)
        )

    @talks_to_redis
    def remove_alias(
        self,
        name: str,
        alias: str,
        *,
        expected_current: AliasTarget | int | None,
        reason: str,
        actor: str | None = None,
    ) -> HistoryEntry:
        """Remove ``alias`` if it is at ``expected_current``; see ``Registry.remove_alias``."""
        b, k = self.backend, self.backend.keys
        what = f"{check_model_name(name)}@{check_alias(alias)}"
        if alias == CHAMPION:
            raise VersionStateError(f"{what} cannot be removed; roll back instead")
        actor_, user = b.who(actor)
        answer = run(
            b.scripts.remove_alias,
            [k.aliases(name), k.history(name)],
            [alias, _expected(expected_current), actor_, user, reason, k.notices(name)],
        )
        if answer[0] == "unchanged":
            raise AliasNotFoundError(f"{what} is not set")
        b.raise_for(answer, f"remove {what}", name, 0)
        entry = entries.move_entry(answer, "remove_alias", alias)
        version = entry.from_target.version if entry.from_target else 0
        return entries.with_who(entry, version, actor_, user, reason)

    @talks_to_redis
    def rollback(
        self,
        name: str,
        reason: str,
        *,
        actor: str | None = None,
        expected_current: AliasTarget | int | None = None,
        expected_previous: AliasTarget | int | None = None,
    ) -> HistoryEntry:
        """Move ``champion`` back to the previous champion; see ``Registry.rollback``."""
        b, k = self.backend, self.backend.keys
        with b.client.pipeline(transaction=False) as pipe:
            pipe.hget(k.aliases(check_model_name(name)), CHAMPION)
            pipe.lindex(k.previous_champions(name), 0)
            current_raw, previous_raw = pipe.execute()
        current, previous = AliasTarget.decode(current_raw), AliasTarget.decode(previous_raw)
        if previous is None:
            raise NoPreviousChampionError(f"{name} has no previous champion to roll back to")
        expected = current.encode() if current else ""
        if expected_current is not None:
            expected = _expected(expected_current)
        what = f"{name}@champion -> v{previous.version} (rollback)"
        # The script then moves only if the previous champion is still the one read here.
        _check_expected(previous, expected_previous, f"{what}: the rollback target")
        self._verify(name, previous.version, previous.digest, what)
        actor_, user = b.who(actor)
        keys = [
            k.aliases(name),
            k.version(name, current.version if current else previous.version),
            k.version(name, previous.version),
            k.previous_champions(name),
            k.history(name),
        ]
        args = [expected, previous.encode(), previous.version, actor_, user, reason]
        answer = run(b.scripts.rollback, keys, [*args, k.notices(name)])
        b.raise_for(answer, what, name, previous.version)
        log.info(
            "rolled back %s from %s to %s by %s/%s: %s",
            name,
            current,
            previous,
            actor_,
            user,
            reason,
        )
        entry = entries.move_entry(answer, "rollback", CHAMPION)
        return entries.with_who(entry, previous.version, actor_, user, reason)

    @talks_to_redis
    def reject(
        self,
        name: str,
        version: int,
        reason: str,
        *,
        actor: str | None = None,
        status: Literal["rejected", "not_comparable"] = "rejected",
    ) -> HistoryEntry | None:
        """Mark a version ``rejected`` or ``not_comparable``; see ``Registry.reject``."""
        b, k = self.backend, self.backend.keys
        action = "reject" if status == "rejected" else status
        what = f"{action} {check_model_name(name)} v{version}"
        actor_, user = b.who(actor)
        answer = run(
            b.scripts.reject,
            [k.version(name, version), k.aliases(name), k.history(name)],
            [version, actor_, user, reason, status],
        )
        if answer[0] == "unchanged":
            return None
        b.raise_for(answer, what, name, version)
        log.info("%s %s v%d by %s/%s: %s", status, name, version, actor_, user, reason)
        made = entries.plain_entry(answer[1], action)
        return entries.with_who(made, version, actor_, user, reason)


def _flag(value: bool) -> str:
    return "1" if value else ""


def _check_expected(target: AliasTarget, expected: AliasTarget | int | None, what: str) -> None:
    """Refuse (``PromotionConflictError``) if ``target`` is not ``expected`` (None: any;
    an int: that version number; an AliasTarget: exactly that)."""
    if expected is None:
        return
    same = target == expected if isinstance(expected, AliasTarget) else target.version == expected
    if not same:
        raise PromotionConflictError(
            f"{what} is v{target.version}, not {_expected(expected)} (another move came first)"
        )


def _expected(value: AliasTarget | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, AliasTarget):
        return value.encode()
    return str(int(value))
