"""The model registry: versions, signed artifacts, lineage and aliases in Redis.

Reads on the hot path are one round trip (``resolve``); a version is loaded once per
process and verified before anything of it is unpickled; every alias move is an atomic
compare-and-set that appends to the history stream and publishes a notice.

``Registry`` is the one class callers use. It delegates to small parts, one
responsibility each, that share one ``Backend`` (client, keys, scripts, settings):
``Reads`` (reads.py), ``Loader`` (loader.py: fetch, verify, the load cache),
``Registration`` (registration.py), ``Retention`` (retention.py), ``Reports``
(reports.py), ``Moves`` (moves.py: alias moves, rejections, the verification before a
move) and ``Exchange`` (exchange.py: export and import). Composition rather than mixins:
each part names the others it needs in its constructor, so what depends on what is
visible, and each can be read (and tested) alone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import redis

from inferloop.connections import make_redis
from inferloop.keys import Keys
from inferloop.registry import moves
from inferloop.registry.backend import Backend, default_actor
from inferloop.registry.entities import (
    CHAMPION,
    AliasTarget,
    HistoryEntry,
    LoadedModel,
    LockGuard,
    ModelVersion,
    RegisteredModel,
    VerifyResult,
)
from inferloop.registry.exchange import Exchange
from inferloop.registry.golden import RowsBuilder, domain_rows
from inferloop.registry.loader import Loader
from inferloop.registry.loading import Trust
from inferloop.registry.moves import SERVED_ALIASES, Moves
from inferloop.registry.reads import Reads
from inferloop.registry.registration import Registration
from inferloop.registry.reports import Reports
from inferloop.registry.retention import Retention
from inferloop.registry.signing import Signer, Verifier, load_public_key
from inferloop.registry.watch import UNSET, ChampionWatcher, Unset
from inferloop.settings import RedisSettings, Settings

__all__ = ["SERVED_ALIASES", "Registry", "default_actor"]

log = logging.getLogger(__name__)


class Registry:
    """Model versions, signed artifacts and aliases in one Redis, under a key prefix."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        redis_settings: RedisSettings,
        signer: Signer | None = None,
        trust: Trust | None = None,
        keep_versions: int = 10,
        max_artifact_bytes: int = 256 * 1024 * 1024,
        actor: str | None = None,
        rows_builder: RowsBuilder = domain_rows,
    ) -> None:
        backend = Backend(
            client=client,
            redis_settings=redis_settings,
            signer=signer,
            trust=trust or Trust(Verifier({})),
            keep_versions=keep_versions,
            max_artifact_bytes=max_artifact_bytes,
            actor=actor or default_actor(),
            rows_builder=rows_builder,
        )
        self._backend = backend
        self._reads = Reads(backend)
        self._loader = Loader(backend, self._reads)
        retention = Retention(backend)
        self._retention = retention
        self._registration = Registration(backend, self._reads, retention)
        self._reports = Reports(backend, self._reads)
        self._moves = Moves(backend, self._verify_move)
        self._exchange = Exchange(backend, self._loader, self._registration)
        if backend.trust.allow_unsigned:
            log.warning(
                "REGISTRY DEVELOPMENT MODE: unsigned artifacts are accepted and stored "
                "(INFERLOOP_REGISTRY__ALLOW_UNSIGNED=true); never use this in production"
            )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, rows_builder: RowsBuilder = domain_rows
    ) -> Registry:
        """The registry ``settings`` describe: its Redis client, the signing key if any
        (never on workers) and the trusted public keys (the signer's own among them)."""
        section = settings.registry
        signer = Signer.from_file(section.signing_key_path) if section.signing_key_path else None
        public = [load_public_key(path) for path in section.verify_key_paths]
        if signer is not None:
            public.append(signer.public_key)
        return cls(
            make_redis(settings.redis),
            redis_settings=settings.redis,
            signer=signer,
            trust=Trust(Verifier.from_keys(public), section.allow_unsigned),
            keep_versions=section.keep_versions,
            max_artifact_bytes=section.max_artifact_bytes,
            actor=section.actor,
            rows_builder=rows_builder,
        )

    # -- what it was made with (read-only: the parts share them) ---------------------
    @property
    def client(self) -> redis.Redis:
        """The Redis client."""
        return self._backend.client

    @property
    def redis_settings(self) -> RedisSettings:
        """The Redis settings (address, user, key prefix)."""
        return self._backend.redis_settings

    @property
    def keys(self) -> Keys:
        """The key builder under the settings' key prefix."""
        return self._backend.keys

    @property
    def signer(self) -> Signer | None:
        """The signing key of new versions, None on a registry that only reads."""
        return self._backend.signer

    @property
    def trust(self) -> Trust:
        """The keys whose signatures are accepted, and whether unsigned ones are."""
        return self._backend.trust

    @property
    def keep_versions(self) -> int:
        """Artifacts kept per model by retention (and previous champions kept)."""
        return self._backend.keep_versions

    @property
    def max_artifact_bytes(self) -> int:
        """The largest compressed artifact stored or imported."""
        return self._backend.max_artifact_bytes

    @property
    def actor(self) -> str:
        """The actor recorded for moves made without one."""
        return self._backend.actor

    @property
    def rows_builder(self) -> RowsBuilder:
        """Builds a domain's model rows from events (golden scores)."""
        return self._backend.rows_builder

    def close(self) -> None:
        """Close the Redis connections."""
        self.client.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def ping(self) -> None:
        """Check that Redis answers (RegistryUnavailableError naming its address if not)."""
        self._backend.ping()

    # -- reads -----------------------------------------------------------------------
    def resolve(self, name: str, alias: str = CHAMPION) -> AliasTarget | None:
        """Where ``alias`` points (version and digest), None if unset: one round trip."""
        return self._reads.resolve(name, alias)

    def get_model(self, name: str) -> RegisteredModel:
        """A registered model with its aliases; ModelNotFoundError if unknown."""
        return self._reads.get_model(name)

    def list_models(self) -> list[RegisteredModel]:
        """Every registered model, by name."""
        return self._reads.list_models()

    def get_version(self, name: str, version: int) -> ModelVersion:
        """One version's metadata (its signature is not checked here: see ``verify``)."""
        return self._reads.get_version(name, version)

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every version of a model, oldest first; ModelNotFoundError if unknown."""
        return self._reads.list_versions(name)

    def history(self, name: str, *, limit: int = 100) -> list[HistoryEntry]:
        """The newest ``limit`` entries of a model's history, newest first."""
        return self._reads.history(name, limit=limit)

    def fallback_targets(self, name: str, *, limit: int = 1000) -> list[AliasTarget]:
        """Versions that were champion before the current one, most recently first, that
        a worker may serve while the champion fails verification: neither rejected nor
        rolled back, artifact kept, and the same artifact as when they served. They are
        not verified here (``load`` does that)."""
        return self._reads.fallback_targets(name, limit=limit)

    def watch(
        self,
        name: str,
        alias: str = CHAMPION,
        *,
        current: AliasTarget | Unset | None = UNSET,
        check_interval_s: float | None = None,
    ) -> ChampionWatcher:
        """A watcher of ``alias`` whose ``wait(timeout_s)`` returns the new target when it
        moved; compared with ``current`` (default: where the alias points now)."""
        return ChampionWatcher(
            self, name, alias, current=current, check_interval_s=check_interval_s
        )

    # -- register --------------------------------------------------------------------
    def register(
        self,
        name: str,
        pipeline: Any,
        *,
        domain: str,
        threshold: float,
        input_schema_version: int,
        golden_events: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
        metrics: Mapping[str, Any],
        champion_metrics: Mapping[str, Any] | None,
        lineage: Mapping[str, Any],
        created_by: str,
        description: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> ModelVersion:
        """Store a fitted pipeline as a new signed version with status ``candidate``.

        The artifact is loaded back here first: its load time and resident size are
        recorded, and the golden scores are those of the reloaded copy (which must match
        the original's). Metadata and artifact are written in one atomic step; then
        retention runs (``keep_versions``).
        """
        return self._registration.register(
            name,
            pipeline,
            domain=domain,
            threshold=threshold,
            input_schema_version=input_schema_version,
            golden_events=golden_events,
            params=params,
            metrics=metrics,
            champion_metrics=champion_metrics,
            lineage=lineage,
            created_by=created_by,
            description=description,
            tags=tags,
        )

    # -- load and verify -------------------------------------------------------------
    def load(self, name: str, version: int, *, digest: str | None = None) -> LoadedModel:
        """A verified, checked version, loaded once per process (later calls return it).

        Before anything is unpickled: the signature over the manifest (by a trusted key),
        the manifest's name and version, the artifact's size and digest (and ``digest``
        when given), the scikit-learn minor version. After: the golden sample must
        reproduce its recorded scores.
        """
        return self._loader.load(name, version, digest=digest)

    def verify(self, name: str, version: int) -> VerifyResult:
        """Check one stored version's signature and digest; nothing is unpickled. A
        tombstone's manifest signature alone is checked."""
        return self._loader.verify(name, version)

    def verify_all(self, name: str | None = None) -> list[VerifyResult]:
        """``verify`` every stored version of ``name``, or of every model."""
        return self._loader.verify_all(name)

    # -- aliases ---------------------------------------------------------------------
    def promote(
        self,
        name: str,
        version: int,
        *,
        expected_current: AliasTarget | int | None,
        reason: str,
        actor: str | None = None,
        guard: LockGuard | None = None,
        digest: str | None = None,
        reviewed: bool = False,
    ) -> HistoryEntry:
        """Move ``champion`` to ``version`` if it is still at ``expected_current`` (None:
        unset; an int: that version number; an AliasTarget: exactly that) and, with a
        ``guard``, if the guard's lock still holds its token: one atomic step. The old
        champion becomes ``archived`` and the rollback target. With ``digest``, the
        version must have that artifact digest.

        The version is verified first as a worker would (signature, digest, golden scores
        through the domain's scorer), and the move happens only if its stored digest is
        still the verified one; a failure raises its own error (``DigestMismatchError``,
        ``GoldenMismatchError``, ...) and nothing moves. A ``rejected`` version is never
        promoted, a ``rolled_back`` one only with ``reviewed`` (kept in the history)."""
        return self.set_alias(
            name,
            CHAMPION,
            version,
            expected_current=expected_current,
            reason=reason,
            actor=actor,
            guard=guard,
            digest=digest,
            reviewed=reviewed,
        )

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
        """Compare-and-set ``alias`` to ``version`` (see ``promote``); ``champion`` and
        ``challenger``, which workers serve, only to a version that verifies."""
        return self._moves.set_alias(
            name,
            alias,
            version,
            expected_current=expected_current,
            reason=reason,
            actor=actor,
            guard=guard,
            digest=digest,
            reviewed=reviewed,
        )

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
        """Make the version ``challenger`` points at the champion and remove
        ``challenger``: one atomic step, verified first as ``promote`` is. The old
        champion becomes ``archived`` and the rollback target. With ``expected_champion``
        the champion must still be there; without, where it is when this call reads it.
        With ``expected_challenger`` (an int: that version number; an AliasTarget:
        exactly that) the challenger must be that one, else ``PromotionConflictError``."""
        return self._moves.promote_challenger(
            name,
            reason=reason,
            actor=actor,
            expected_champion=expected_champion,
            expected_challenger=expected_challenger,
            reviewed=reviewed,
        )

    def remove_alias(
        self,
        name: str,
        alias: str,
        *,
        expected_current: AliasTarget | int | None,
        reason: str,
        actor: str | None = None,
    ) -> HistoryEntry:
        """Remove ``alias`` if it is at ``expected_current``. ``champion`` moves only by
        ``promote`` and ``rollback``."""
        return self._moves.remove_alias(
            name, alias, expected_current=expected_current, reason=reason, actor=actor
        )

    def rollback(
        self,
        name: str,
        reason: str,
        *,
        actor: str | None = None,
        expected_current: AliasTarget | int | None = None,
        expected_previous: AliasTarget | int | None = None,
    ) -> HistoryEntry:
        """Move ``champion`` back to the previous champion (the one it replaced), once
        that version verified as ``promote`` verifies; the version rolled back from is
        marked ``rolled_back`` (promoted again only with ``reviewed``). With
        ``expected_current``, only if the champion is still there; with
        ``expected_previous``, only if the rollback target is that version (else
        ``PromotionConflictError``, nothing moved)."""
        return self._moves.rollback(
            name,
            reason,
            actor=actor,
            expected_current=expected_current,
            expected_previous=expected_previous,
        )

    def reject(
        self,
        name: str,
        version: int,
        reason: str,
        *,
        actor: str | None = None,
        status: Literal["rejected", "not_comparable"] = "rejected",
    ) -> HistoryEntry | None:
        """Mark a version ``rejected`` (it can then not be promoted) or ``not_comparable``
        (the gate could not compare it with the champion: not known bad, so an operator
        may still promote it); refused while an alias points at it. None if it has that
        status already, or is rejected (which a not-comparable mark does not soften)."""
        return self._moves.reject(name, version, reason, actor=actor, status=status)

    def _verified(self, name: str, version: int, digest: str | None, what: str) -> str:
        """The digest of ``version`` once it verified as a worker checks it, before a
        move to it (see ``moves.verified``)."""
        return moves.verified(self._loader, name, version, digest, what)

    def _verify_move(self, name: str, version: int, digest: str | None, what: str) -> str:
        # ``_verified`` is looked up on each move, so replacing it on the instance (as a
        # test does, to change the stored bytes between the check and the move) holds.
        return self._verified(name, version, digest, what)

    # -- retention -------------------------------------------------------------------
    def delete_version(
        self, name: str, version: int, *, reason: str, actor: str | None = None
    ) -> HistoryEntry | None:
        """Delete a version's artifact, keeping its metadata as a tombstone. Refused
        while an alias points at it or it is a rollback target. None if already gone."""
        return self._retention.delete_version(name, version, reason=reason, actor=actor)

    def apply_retention(self, name: str, *, keep: int | None = None) -> list[int]:
        """Delete the artifacts of all but the newest ``keep`` versions (default: the
        ``keep_versions`` setting), never one an alias points at nor a rollback target.
        The versions whose artifacts were deleted, oldest first."""
        return self._retention.apply_retention(name, keep=keep)

    # -- reports ---------------------------------------------------------------------
    def put_report(self, name: str, version: int, files: Mapping[str, bytes]) -> None:
        """Store report files (file name -> bytes) with a version; same names replace."""
        self._reports.put_report(name, version, files)

    def get_report(self, name: str, version: int) -> dict[str, bytes]:
        """The report files of a version (file name -> bytes); empty if there are none."""
        return self._reports.get_report(name, version)

    # -- export and import -----------------------------------------------------------
    def export_version(self, name: str, version: int, path: Path) -> ModelVersion:
        """Write a version (manifest, signature, state and artifact) to ``path``; it is
        verified first, so a tampered version is never exported."""
        return self._exchange.export_version(name, version, path)

    def import_version(self, path: Path, *, trust: Verifier | None = None) -> ModelVersion:
        """Store the version exported to ``path`` as a new version of its model.

        Before anything is stored, the file's signature (by a key this registry trusts,
        or one of ``trust``'s), digest and scikit-learn version are checked, then the
        artifact is unpickled and its golden sample must reproduce. The new version is
        signed by this registry's key and records where it came from.
        """
        return self._exchange.import_version(path, trust=trust)
