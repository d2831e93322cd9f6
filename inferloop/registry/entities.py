"""The registry's entities: small, frozen and typed.

A registered model has versions; an alias (``champion``, ``challenger``) points at
exactly one version, identified by its number *and* its artifact digest, so a number
reused after a Redis crash can never be taken for another artifact.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from inferloop.registry.errors import InvalidNameError, RegistryStorageError, ReservedAliasError

# ``not_comparable``: the gate could not compare the version with the champion (its
# holdout overlapped the champion's training data, or the champion could not be scored).
# ``rolled_back``: the champion a rollback moved away from; promoted again only once the
# operator says it was reviewed. ``rejected`` is never promoted.
Status = Literal["candidate", "champion", "rejected", "not_comparable", "archived", "rolled_back"]
STATUSES: tuple[Status, ...] = (
    "candidate",
    "champion",
    "rejected",
    "not_comparable",
    "archived",
    "rolled_back",
)

CHAMPION = "champion"
# The alias of the version scored in shadow beside the champion.
CHALLENGER = "challenger"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
_ALIAS = re.compile(r"^[a-z][a-z0-9_\-]{0,63}$")
# ``latest`` means "the newest version" and ``v3``/``3`` mean version 3: as alias names
# they would make ``show NAME@latest`` ambiguous.
_VERSION_LIKE = re.compile(r"^v?\d+$", re.IGNORECASE)
RESERVED_ALIASES = frozenset({"latest"})


def check_model_name(name: str) -> str:
    """``name`` if it can name a model (letters, digits, ``_.-``), else InvalidNameError."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidNameError(
            f"model name {name!r} must be 1-100 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_alias(alias: str) -> str:
    """``alias`` if it may name an alias, else ReservedAliasError or InvalidNameError."""
    if alias in RESERVED_ALIASES or _VERSION_LIKE.match(alias):
        raise ReservedAliasError(f"alias {alias!r} is reserved (latest and version-like names)")
    if not _ALIAS.match(alias):
        raise InvalidNameError(
            f"alias {alias!r} must be 1-64 lower-case letters, digits, '_' or '-', "
            "starting with a letter"
        )
    return alias


@dataclass(frozen=True)
class AliasTarget:
    """Where an alias points: a version number and that version's artifact digest."""

    version: int
    digest: str

    def encode(self) -> str:
        """The form stored in the aliases hash and the history stream."""
        return f"{self.version} {self.digest}"

    @classmethod
    def decode(cls, value: bytes | str | None) -> AliasTarget | None:
        """The target stored as ``value`` (None for an empty or missing value)."""
        if not value:
            return None
        text = value.decode() if isinstance(value, bytes) else value
        number, _, digest = text.partition(" ")
        if not number.isdigit() or not digest:
            raise RegistryStorageError(f"alias value {text!r} is not 'VERSION DIGEST'")
        return cls(int(number), digest)

    def __str__(self) -> str:
        return f"v{self.version} ({self.digest[:12]})"


@dataclass(frozen=True)
class LockGuard:
    """A lock the caller must still hold, checked in the same atomic step as a move.

    ``key`` is the full Redis key (``Keys.retrain_lock(domain)``, which shares the
    model's hash tag) and ``token`` the value the holder wrote into it.
    """

    key: str
    token: str


@dataclass(frozen=True)
class GoldenSample:
    """A few input events and the scores the registered pipeline gave them."""

    events: tuple[Mapping[str, Any], ...]
    scores: tuple[float, ...]


@dataclass(frozen=True)
class ModelVersion:
    """One version of a registered model.

    Everything down to ``resident_bytes`` is in the signed manifest; ``status``, tags,
    description, aliases and the tombstone are mutable state beside it.
    """

    name: str
    version: int
    domain: str
    created_at: datetime
    created_by: str
    threshold: float
    input_schema_version: int
    params: Mapping[str, Any]
    metrics: Mapping[str, Any]
    champion_metrics: Mapping[str, Any] | None
    lineage: Mapping[str, Any]
    libraries: Mapping[str, str]
    artifact_digest: str
    artifact_size: int
    artifact_compression: str
    golden: GoldenSample
    # Measured by the registering process when it loaded its own artifact back.
    load_time_s: float
    resident_bytes: int
    imported_from: Mapping[str, Any] | None
    status: Status
    signature: str | None
    signing_key_id: str | None
    tags: Mapping[str, str]
    description: str
    aliases: tuple[str, ...] = ()
    artifact_deleted_at: datetime | None = None

    @property
    def target(self) -> AliasTarget:
        """This version as an alias would point at it."""
        return AliasTarget(self.version, self.artifact_digest)

    @property
    def has_artifact(self) -> bool:
        """False once retention or ``delete`` removed the artifact (a tombstone)."""
        return self.artifact_deleted_at is None


@dataclass(frozen=True)
class RegisteredModel:
    """A registered model: its own fields and where its aliases point."""

    name: str
    created_at: datetime
    description: str
    tags: Mapping[str, str]
    aliases: Mapping[str, AliasTarget]
    latest_version: int | None
    version_count: int


@dataclass(frozen=True)
class LoadedModel:
    """A verified, unpickled version, ready to score.

    ``load_time_s`` and ``resident_bytes`` are measured in this process.
    """

    version: ModelVersion
    pipeline: Any
    # Unpickling alone; then the golden check; then all of load() (fetch and verify too).
    load_time_s: float
    resident_bytes: int
    verified_key_id: str | None
    check_time_s: float = 0.0
    total_time_s: float = 0.0

    @property
    def target(self) -> AliasTarget:
        """The version and digest this model was loaded from."""
        return self.version.target


@dataclass(frozen=True)
class HistoryEntry:
    """One entry of a model's history stream: an alias move, a rejection or a deletion."""

    id: str
    time: datetime
    action: str
    alias: str | None
    from_target: AliasTarget | None
    to_target: AliasTarget | None
    version: int | None
    actor: str
    user: str
    reason: str
    # True on a move the operator confirmed after review (promoting a rolled-back version).
    reviewed: bool = False


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of checking one stored version's signature and digest."""

    name: str
    version: int
    ok: bool
    # What failed, or a remark on a good one (e.g. a tombstone, whose manifest alone is
    # checked).
    detail: str | None
    signing_key_id: str | None
