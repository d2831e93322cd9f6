"""What the registry's parts share: one Redis client, its keys and scripts, the settings.

``Registry`` is a facade over small parts (reads, loader, registration, retention,
reports, moves, exchange); each holds this one ``Backend``, so there is a single client,
a single set of loaded scripts and a single answer to "who is moving this alias".
"""

from __future__ import annotations

import functools
import getpass
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Concatenate, ParamSpec, Protocol, TypeVar

import redis

from inferloop.keys import Keys
from inferloop.registry.entities import AliasTarget
from inferloop.registry.errors import (
    ArtifactDeletedError,
    LockLostError,
    ModelNotFoundError,
    NoPreviousChampionError,
    PromotionConflictError,
    RegistryError,
    RegistryStorageError,
    VersionNotFoundError,
    VersionStateError,
)
from inferloop.registry.golden import RowsBuilder
from inferloop.registry.loading import Trust
from inferloop.registry.signing import Signer
from inferloop.registry.storage import Scripts, translated_errors
from inferloop.settings import RedisSettings

P = ParamSpec("P")
R = TypeVar("R")


def default_actor() -> str:
    """``user@host`` of this process, recorded as the actor of the moves it makes."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass
class Backend:
    """The client, key builder and scripts of one registry, and its settings."""

    client: redis.Redis
    redis_settings: RedisSettings
    signer: Signer | None
    trust: Trust
    keep_versions: int
    max_artifact_bytes: int
    actor: str
    rows_builder: RowsBuilder
    keys: Keys = field(init=False)
    scripts: Scripts = field(init=False)
    _user: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.keys = Keys(self.redis_settings.key_prefix)
        self.scripts = Scripts(self.client)

    def ping(self) -> None:
        """Check that Redis answers (RegistryUnavailableError naming its address if not)."""
        with translated_errors(self.redis_settings):
            self.client.ping()

    def who(self, actor: str | None) -> tuple[str, str]:
        """The actor recorded for a move (``actor``, else this registry's) and the Redis
        user making it."""
        # The Redis user is asked once: a client's credentials do not change.
        if self._user is None:
            self._user = text(self.client.acl_whoami())
        return actor or self.actor, self._user

    def missing(self, name: str, version: int) -> RegistryError:
        """The error for a version that is not there: its model or only the version."""
        if not self.client.exists(self.keys.model(name)):
            return ModelNotFoundError(f"model {name!r} is not registered")
        return VersionNotFoundError(f"{name} v{version} does not exist")

    def raise_for(self, answer: list[str], what: str, name: str, version: int) -> None:
        """Raise the typed error a script's answer stands for; nothing if it is ``ok``."""
        status = answer[0]
        if status == "ok":
            return
        if status == "no_version":
            raise self.missing(name, version)
        detail = answer[1] if len(answer) > 1 else ""
        if status == "challenger_moved":
            raise PromotionConflictError(
                f"{what}: the challenger moved to {_shown(detail)} (another move came first)"
            )
        if status == "conflict":
            raise PromotionConflictError(
                f"{what}: the alias is at {_shown(detail)}, not where this move expected it "
                "(another move came first)"
            )
        kind, message = _refusal(status, version, detail, answer)
        raise kind(f"{what}: {message}")


class _HasBackend(Protocol):
    @property
    def backend(self) -> Backend: ...


S = TypeVar("S", bound=_HasBackend)


def talks_to_redis(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Run ``method`` with Redis client errors turned into registry errors."""

    @functools.wraps(method)
    def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with translated_errors(self.backend.redis_settings):
            return method(self, *args, **kwargs)

    return wrapper


def text(value: bytes | str) -> str:
    """A Redis reply as text."""
    return value.decode() if isinstance(value, bytes) else value


def _refusal(
    status: str, version: int, detail: str, answer: list[str]
) -> tuple[type[RegistryError], str]:
    kinds: dict[str, tuple[type[RegistryError], str]] = {
        "lock_lost": (LockLostError, "the retrain lock is no longer held by this job"),
        "digest": (VersionStateError, f"v{version} has digest {detail[:12]}"),
        "tombstone": (ArtifactDeletedError, f"v{version}'s artifact was deleted"),
        "rejected": (VersionStateError, f"v{version} is rejected"),
        "rolled_back": (
            VersionStateError,
            f"v{version} was rolled back; promote it again only once reviewed (reviewed=True, "
            "inferloop registry promote --reviewed)",
        ),
        "unchanged": (VersionStateError, "the alias is there already"),
        "aliased": (VersionStateError, f"alias {detail!r} points at v{version}"),
        "rollback_target": (VersionStateError, f"v{version} is a rollback target"),
        "no_previous": (NoPreviousChampionError, "there is no previous champion"),
    }
    return kinds.get(status, (RegistryStorageError, f"unexpected answer {answer}"))


def _shown(encoded: str) -> str:
    target = AliasTarget.decode(encoded)
    return str(target) if target else "nothing"
