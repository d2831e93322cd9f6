"""The model registry: versions, signed artifacts, lineage and aliases in Redis.

Reads on the hot path are one round trip (``resolve``); a version is loaded once per
process and verified before anything of it is unpickled; every alias move is an atomic
compare-and-set that appends to the history stream and publishes a notice.
"""

from __future__ import annotations

import base64
import functools
import getpass
import json
import logging
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar, cast

import redis

from inferloop.connections import make_redis
from inferloop.domains import UnknownDomainError, get_domain
from inferloop.keys import Keys
from inferloop.registry import artifact, golden, serving, transfer
from inferloop.registry.entities import (
    CHAMPION,
    AliasTarget,
    HistoryEntry,
    LoadedModel,
    LockGuard,
    ModelVersion,
    RegisteredModel,
    VerifyResult,
    check_alias,
    check_model_name,
)
from inferloop.registry.errors import (
    AliasNotFoundError,
    ArtifactDeletedError,
    ArtifactTooLargeError,
    IntegrityError,
    InvalidVersionError,
    LockLostError,
    ModelNotFoundError,
    NoPreviousChampionError,
    PromotionConflictError,
    RegistryError,
    RegistryStorageError,
    RegistryUnavailableError,
    SigningKeyError,
    VersionNotFoundError,
    VersionStateError,
)
from inferloop.registry.golden import RowsBuilder, domain_rows
from inferloop.registry.loading import Trust, unpickle_checked, verified_manifest
from inferloop.registry.manifest import (
    FORMAT,
    canonical_json,
    library_versions,
    now_iso,
    signature_bytes,
    to_json_value,
    version_from_fields,
)
from inferloop.registry.signing import Signer, Verifier, load_public_key
from inferloop.registry.storage import Scripts, run, translated_errors
from inferloop.registry.watch import UNSET, ChampionWatcher, Unset
from inferloop.settings import RedisSettings, Settings

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# Loaded versions kept per model: the one in use and the one before it, so a rollback
# swaps back without a reload.
_LOADED_PER_MODEL = 2
_MAX_GOLDEN_EVENTS = 1000
_MAX_REPORT_FILE_NAME = 200
# The aliases workers serve: moved only to a version that verifies.
SERVED_ALIASES = frozenset({CHAMPION, "challenger"})


def _talks_to_redis(
    method: Callable[Concatenate[Registry, P], R],
) -> Callable[Concatenate[Registry, P], R]:
    @functools.wraps(method)
    def wrapper(self: Registry, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with translated_errors(self.redis_settings):
            return method(self, *args, **kwargs)

    return wrapper


def default_actor() -> str:
    """``user@host`` of this process, recorded as the actor of the moves it makes."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


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
        self.client = client
        self.redis_settings = redis_settings
        self.keys = Keys(redis_settings.key_prefix)
        self.signer = signer
        self.trust = trust or Trust(Verifier({}))
        self.keep_versions = keep_versions
        self.max_artifact_bytes = max_artifact_bytes
        self.actor = actor or default_actor()
        self.rows_builder = rows_builder
        self._scripts = Scripts(client)
        self._user: str | None = None
        self._loaded: dict[str, OrderedDict[int, LoadedModel]] = {}
        self._load_lock = threading.Lock()
        if self.trust.allow_unsigned:
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

    def close(self) -> None:
        """Close the Redis connections."""
        self.client.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @_talks_to_redis
    def ping(self) -> None:
        """Check that Redis answers (RegistryUnavailableError naming its address if not)."""
        self.client.ping()

    # -- reads -----------------------------------------------------------------------
    @_talks_to_redis
    def resolve(self, name: str, alias: str = CHAMPION) -> AliasTarget | None:
        """Where ``alias`` points (version and digest), None if unset: one round trip."""
        key = self.keys.aliases(check_model_name(name))
        return AliasTarget.decode(self.client.hget(key, check_alias(alias)))

    @_talks_to_redis
    def get_model(self, name: str) -> RegisteredModel:
        """A registered model with its aliases; ModelNotFoundError if unknown."""
        k = self.keys
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(k.model(check_model_name(name)))
            pipe.hgetall(k.aliases(name))
            pipe.zrevrange(k.versions(name), 0, 0)
            pipe.zcard(k.versions(name))
            fields, aliases, latest, count = pipe.execute()
        if not fields:
            raise ModelNotFoundError(f"model {name!r} is not registered")
        targets = {key.decode(): AliasTarget.decode(value) for key, value in aliases.items()}
        return RegisteredModel(
            name=name,
            created_at=datetime.fromisoformat(fields[b"created_at"].decode()),
            description=fields.get(b"description", b"").decode(),
            tags=json.loads(fields.get(b"tags", b"{}")),
            aliases={key: value for key, value in sorted(targets.items()) if value is not None},
            latest_version=int(latest[0]) if latest else None,
            version_count=int(count),
        )

    @_talks_to_redis
    def list_models(self) -> list[RegisteredModel]:
        """Every registered model, by name."""
        names = sorted(_text(n) for n in self.client.smembers(self.keys.models()))
        return [self.get_model(name) for name in names]

    @_talks_to_redis
    def get_version(self, name: str, version: int) -> ModelVersion:
        """One version's metadata (its signature is not checked here: see ``verify``)."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.version(check_model_name(name), version))
            pipe.hgetall(self.keys.aliases(name))
            fields, aliases = pipe.execute()
        if not fields:
            raise self._missing(name, version)
        return version_from_fields(fields, _aliases_of(aliases, version))

    @_talks_to_redis
    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every version of a model, oldest first; ModelNotFoundError if unknown."""
        k = self.keys
        raw: list[bytes] = cast(Any, self.client.zrange(k.versions(check_model_name(name)), 0, -1))
        numbers = [int(_text(v)) for v in raw]
        if not numbers and not self.client.exists(k.model(name)):
            raise ModelNotFoundError(f"model {name!r} is not registered")
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(k.aliases(name))
            for number in numbers:
                pipe.hgetall(k.version(name, number))
            aliases, *hashes = pipe.execute()
        return [
            version_from_fields(fields, _aliases_of(aliases, number))
            for number, fields in zip(numbers, hashes, strict=True)
            if fields
        ]

    @_talks_to_redis
    def history(self, name: str, *, limit: int = 100) -> list[HistoryEntry]:
        """The newest ``limit`` entries of a model's history, newest first."""
        raw: Any = self.client.xrevrange(self.keys.history(check_model_name(name)), count=limit)
        return [_entry(_text(i), {_text(k): _text(v) for k, v in f.items()}) for i, f in raw]

    @_talks_to_redis
    def fallback_targets(self, name: str, *, limit: int = 1000) -> list[AliasTarget]:
        """Versions that were champion before the current one, most recently first, that
        a worker may serve while the champion fails verification: neither rejected nor
        rolled back, artifact kept, and the same artifact as when they served. They are
        not verified here (``load`` does that)."""
        current = self.resolve(name)
        order: list[AliasTarget] = []
        for entry in self.history(name, limit=limit):
            if entry.alias != CHAMPION:
                continue
            for target in (entry.to_target, entry.from_target):
                if target is not None and target != current and target not in order:
                    order.append(target)
        stored = {v.version: v for v in self.list_versions(name)}
        return [t for t in order if t.version in stored and _may_serve(stored[t.version], t)]

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

    def _missing(self, name: str, version: int) -> RegistryError:
        if not self.client.exists(self.keys.model(name)):
            return ModelNotFoundError(f"model {name!r} is not registered")
        return VersionNotFoundError(f"{name} v{version} does not exist")

    # -- register --------------------------------------------------------------------
    @_talks_to_redis
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
        started = time.perf_counter()
        check_model_name(name)
        self._require_signer()
        events = _golden_events(golden_events)
        # Fail fast: the pickling and checks below take a while.
        self.ping()
        data = self._checked_size(name, artifact.dump(pipeline))
        scores, load = self._round_trip(name, pipeline, data, domain, events)
        body = {
            "domain": str(domain),
            "created_at": now_iso(),
            "created_by": str(created_by),
            "threshold": _threshold(threshold),
            "input_schema_version": int(input_schema_version),
            "params": to_json_value(dict(params), "params"),
            "metrics": to_json_value(dict(metrics), "metrics"),
            "champion_metrics": to_json_value(champion_metrics, "champion_metrics"),
            "lineage": to_json_value(dict(lineage), "lineage"),
            "libraries": library_versions(),
            "artifact": _artifact_fields(data),
            "golden": {"events": events, "scores": scores},
            "load": load,
            "imported_from": None,
        }
        stored = self._store(name, body, data, tags=tags or {}, description=description)
        log.info(
            "registered %s v%d (%d bytes, digest %s) in %.2f s",
            name,
            stored.version,
            len(data),
            stored.artifact_digest[:12],
            time.perf_counter() - started,
        )
        return stored

    def _require_signer(self) -> None:
        if self.signer is None and not self.trust.allow_unsigned:
            raise SigningKeyError(
                "no signing key: set INFERLOOP_REGISTRY__SIGNING_KEY_PATH (or, for "
                "development only, INFERLOOP_REGISTRY__ALLOW_UNSIGNED=true)"
            )

    def _checked_size(self, name: str, data: bytes) -> bytes:
        if len(data) > self.max_artifact_bytes:
            raise ArtifactTooLargeError(
                f"{name}: the artifact is {len(data):,} bytes compressed, above the limit of "
                f"{self.max_artifact_bytes:,} (INFERLOOP_REGISTRY__MAX_ARTIFACT_BYTES; "
                "Redis values stop at 512 MB)"
            )
        return data

    def _round_trip(
        self, name: str, pipeline: Any, data: bytes, domain: str, events: list[Any]
    ) -> tuple[list[float], dict[str, Any]]:
        original = golden.scores(pipeline, self.rows_builder(domain, events)).tolist()
        draft = {
            "domain": domain,
            "artifact": {"compression": artifact.COMPRESSION},
            "golden": {"events": events, "scores": original},
        }
        # Our own bytes, just made: unpickling them runs nothing this process did not write.
        loaded = unpickle_checked(draft, data, self.rows_builder, f"{name} (new version)")
        load = {
            "load_time_s": round(loaded.load_time_s, 6),
            "resident_bytes": loaded.resident_bytes,
        }
        return loaded.scores, load

    def _store(
        self,
        name: str,
        body: Mapping[str, Any],
        data: bytes,
        *,
        tags: Mapping[str, str],
        description: str,
    ) -> ModelVersion:
        k = self.keys
        self._ensure_model(name)
        version = int(self.client.incr(k.version_counter(name)))
        manifest = canonical_json({"format": FORMAT, "name": name, "version": version, **body})
        fields: dict[str, Any] = {
            "manifest": manifest,
            "status": "candidate",
            "artifact_digest": body["artifact"]["digest"],
            "tags": json.dumps(to_json_value(dict(tags), "tags"), sort_keys=True),
            "description": description,
        }
        if self.signer is not None:
            fields["signature"] = base64.b64encode(self.signer.sign(manifest)).decode()
            fields["key_id"] = self.signer.key_id
        answer = run(
            self._scripts.register,
            [k.version(name, version), k.artifact(name, version), k.versions(name), k.model(name)],
            [version, data, now_iso(), *(item for pair in fields.items() for item in pair)],
        )
        if answer[0] != "ok":
            raise RegistryStorageError(f"{name} v{version} exists already (counter reset?)")
        self._retain_after_store(name)
        return self.get_version(name, version)

    def _ensure_model(self, name: str) -> None:
        # The set of names has no hash tag of its own, so it is written beside, not inside,
        # the atomic registration; a name without versions is a harmless leftover.
        with self.client.pipeline(transaction=False) as pipe:
            pipe.sadd(self.keys.models(), name)
            pipe.hsetnx(self.keys.model(name), "created_at", now_iso())
            pipe.execute()

    def _retain_after_store(self, name: str) -> None:
        try:
            self.apply_retention(name)
        except (VersionStateError, RegistryStorageError) as exc:
            # The version is stored; a retention failure must not make it look lost.
            log.error("retention of %s failed after registering: %s", name, exc)

    # -- load ------------------------------------------------------------------------
    def load(self, name: str, version: int, *, digest: str | None = None) -> LoadedModel:
        """A verified, checked version, loaded once per process (later calls return it).

        Before anything is unpickled: the signature over the manifest (by a trusted key),
        the manifest's name and version, the artifact's size and digest (and ``digest``
        when given), the scikit-learn minor version. After: the golden sample must
        reproduce its recorded scores.
        """
        with self._load_lock:
            cached = self._loaded.get(name, OrderedDict()).get(version)
            if cached is not None and digest in (None, cached.version.artifact_digest):
                return cached
            loaded = self._load_uncached(name, version, digest)
            per_model = self._loaded.setdefault(name, OrderedDict())
            per_model[version] = loaded
            per_model.move_to_end(version)
            while len(per_model) > _LOADED_PER_MODEL:
                per_model.popitem(last=False)
            return loaded

    @_talks_to_redis
    def _load_uncached(self, name: str, version: int, digest: str | None) -> LoadedModel:
        started = time.perf_counter()
        what = f"{check_model_name(name)} v{version}"
        log.info("loading %s", what)
        fields, data = self._fetch(name, version)
        fetched = time.perf_counter()
        if data is None:
            raise IntegrityError(f"{what}: the artifact is missing from Redis")
        manifest, signed_by = verified_manifest(
            manifest_bytes=fields.get(b"manifest", b""),
            signature=signature_bytes(fields),
            key_id=_key_id(fields),
            data=data,
            name=name,
            version=version,
            trust=self.trust,
        )
        if digest is not None and digest != manifest["artifact"]["digest"]:
            raise VersionStateError(
                f"{what} has digest {manifest['artifact']['digest'][:12]}, not {digest[:12]}: "
                "its number now names another artifact"
            )
        verified = time.perf_counter()
        checked = unpickle_checked(manifest, data, self.rows_builder, what)
        entity = version_from_fields(fields)
        log.info(
            "loaded %s (digest %s, key %s) in %.3f s: fetch %.3f s, verify %.3f s, "
            "unpickle %.3f s, golden check %.3f s; %d bytes resident",
            what,
            entity.artifact_digest[:12],
            signed_by or "none, unsigned",
            time.perf_counter() - started,
            fetched - started,
            verified - fetched,
            checked.load_time_s,
            checked.check_time_s,
            checked.resident_bytes,
        )
        return LoadedModel(
            version=entity,
            pipeline=checked.pipeline,
            load_time_s=checked.load_time_s,
            resident_bytes=checked.resident_bytes,
            verified_key_id=signed_by,
            check_time_s=checked.check_time_s,
            total_time_s=time.perf_counter() - started,
        )

    def _fetch(self, name: str, version: int) -> tuple[dict[bytes, bytes], bytes | None]:
        # One transaction: metadata and artifact from the same moment.
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.keys.version(name, version))
            pipe.get(self.keys.artifact(name, version))
            fields, data = pipe.execute()
        if not fields:
            raise self._missing(name, version)
        if b"deleted_at" in fields:
            raise ArtifactDeletedError(
                f"{name} v{version}: its artifact was deleted at "
                f"{fields[b'deleted_at'].decode()} ({fields.get(b'deleted_reason', b'').decode()})"
            )
        return fields, data

    # -- verify ----------------------------------------------------------------------
    @_talks_to_redis
    def verify(self, name: str, version: int) -> VerifyResult:
        """Check one stored version's signature and digest; nothing is unpickled. A
        tombstone's manifest signature alone is checked."""
        what = f"{check_model_name(name)} v{version}"
        try:
            fields, data = self._fetch(name, version)
        except ArtifactDeletedError:
            fields = cast(dict[bytes, bytes], self.client.hgetall(self.keys.version(name, version)))
            data = None
        key_id = _key_id(fields)
        try:
            if data is None and b"deleted_at" in fields:
                self.trust.check(fields[b"manifest"], signature_bytes(fields), key_id, what)
                return VerifyResult(name, version, True, "tombstone: manifest only", key_id)
            if data is None:
                raise IntegrityError(f"{what}: the artifact is missing from Redis")
            verified_manifest(
                manifest_bytes=fields.get(b"manifest", b""),
                signature=signature_bytes(fields),
                key_id=key_id,
                data=data,
                name=name,
                version=version,
                trust=self.trust,
                check_libraries=False,
            )
        except (IntegrityError, SigningKeyError, RegistryStorageError) as exc:
            return VerifyResult(name, version, False, str(exc), key_id)
        return VerifyResult(name, version, True, None, key_id)

    @_talks_to_redis
    def verify_all(self, name: str | None = None) -> list[VerifyResult]:
        """``verify`` every stored version of ``name``, or of every model."""
        names = [name] if name else [m.name for m in self.list_models()]
        return [self.verify(n, v.version) for n in names for v in self.list_versions(n)]

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

    @_talks_to_redis
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
        k, expected = self.keys, _expected(expected_current)
        what = f"{check_model_name(name)}@{check_alias(alias)} -> v{version}"
        if alias in SERVED_ALIASES:
            digest = self._verified(name, version, digest, what)
        current_number = int(expected.split(" ")[0]) if expected else version
        actor_, user = self._who(actor)
        keys = [
            k.aliases(name),
            k.version(name, version),
            k.version(name, current_number),
            k.previous_champions(name),
            k.history(name),
            guard.key if guard else k.aliases(name),
        ]
        args = [alias, version, expected, guard.token if guard else "", digest or ""]
        args += [actor_, user, reason, k.notices(name), self.keep_versions, _flag(reviewed)]
        answer = run(self._scripts.set_alias, keys, args)
        self._raise_for(answer, what, name, version)
        entry = _move_entry(answer, "promote" if alias == CHAMPION else "set_alias", alias)
        log.info("moved %s (from %s) by %s/%s: %s", what, entry.from_target, actor_, user, reason)
        return _with_who(entry, version, actor_, user, reason, reviewed=_reviewed(answer))

    @_talks_to_redis
    def promote_challenger(
        self,
        name: str,
        *,
        reason: str,
        actor: str | None = None,
        expected_champion: AliasTarget | int | None = None,
        reviewed: bool = False,
    ) -> HistoryEntry:
        """Make the version ``challenger`` points at the champion and remove
        ``challenger``: one atomic step, verified first as ``promote`` is. The old
        champion becomes ``archived`` and the rollback target. With ``expected_champion``
        the champion must still be there; without, where it is when this call reads it."""
        k = self.keys
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hget(k.aliases(check_model_name(name)), "challenger")
            pipe.hget(k.aliases(name), CHAMPION)
            challenger_raw, champion_raw = pipe.execute()
        challenger, champion = AliasTarget.decode(challenger_raw), AliasTarget.decode(champion_raw)
        if challenger is None:
            raise AliasNotFoundError(f"{name}@challenger is not set")
        what = f"{name}@champion -> v{challenger.version} (the challenger)"
        self._verified(name, challenger.version, challenger.digest, what)
        expected = champion.encode() if champion else ""
        if expected_champion is not None:
            expected = _expected(expected_champion)
        current_number = int(expected.split(" ")[0]) if expected else challenger.version
        actor_, user = self._who(actor)
        keys = [
            k.aliases(name),
            k.version(name, challenger.version),
            k.version(name, current_number),
            k.previous_champions(name),
            k.history(name),
        ]
        args = [challenger.encode(), expected, actor_, user, reason, k.notices(name)]
        args += [str(self.keep_versions), _flag(reviewed)]
        answer = run(self._scripts.promote_challenger, keys, args)
        self._raise_for(answer, what, name, challenger.version)
        entry = _move_entry(answer, "promote_challenger", CHAMPION)
        log.info("moved %s (from %s) by %s/%s: %s", what, entry.from_target, actor_, user, reason)
        return _with_who(
            entry, challenger.version, actor_, user, reason, reviewed=_reviewed(answer)
        )

    def _verified(self, name: str, version: int, digest: str | None, what: str) -> str:
        """The artifact digest of ``version`` once it verified as a worker checks it:
        signature, manifest, digest (``digest`` too, when given), scikit-learn version,
        then the golden scores through the domain's own validation and fastest scorer.

        Read fresh from Redis (never the load cache: the bytes may have changed since).
        A failure is re-raised as its own type, its message naming the move refused.
        """
        try:
            loaded = self._load_uncached(name, version, digest)
            serving.activate(loaded, get_domain(loaded.version.domain))
        except RegistryUnavailableError:
            raise
        except RegistryError as exc:
            raise type(exc)(f"refusing {what}: {exc}") from exc
        except UnknownDomainError as exc:
            raise VersionStateError(f"refusing {what}: {exc}") from exc
        log.info("verified %s before moving it: %s", what, loaded.version.artifact_digest[:12])
        return loaded.version.artifact_digest

    @_talks_to_redis
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
        what = f"{check_model_name(name)}@{check_alias(alias)}"
        if alias == CHAMPION:
            raise VersionStateError(f"{what} cannot be removed; roll back instead")
        actor_, user = self._who(actor)
        answer = run(
            self._scripts.remove_alias,
            [self.keys.aliases(name), self.keys.history(name)],
            [alias, _expected(expected_current), actor_, user, reason, self.keys.notices(name)],
        )
        if answer[0] == "unchanged":
            raise AliasNotFoundError(f"{what} is not set")
        self._raise_for(answer, f"remove {what}", name, 0)
        entry = _move_entry(answer, "remove_alias", alias)
        version = entry.from_target.version if entry.from_target else 0
        return _with_who(entry, version, actor_, user, reason)

    @_talks_to_redis
    def rollback(
        self,
        name: str,
        reason: str,
        *,
        actor: str | None = None,
        expected_current: AliasTarget | int | None = None,
    ) -> HistoryEntry:
        """Move ``champion`` back to the previous champion (the one it replaced), once
        that version verified as ``promote`` verifies; the version rolled back from is
        marked ``rolled_back`` (promoted again only with ``reviewed``). With
        ``expected_current``, only if the champion is still there."""
        k = self.keys
        with self.client.pipeline(transaction=False) as pipe:
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
        self._verified(name, previous.version, previous.digest, what)
        actor_, user = self._who(actor)
        keys = [
            k.aliases(name),
            k.version(name, current.version if current else previous.version),
            k.version(name, previous.version),
            k.previous_champions(name),
            k.history(name),
        ]
        args = [
            expected,
            previous.encode(),
            previous.version,
            actor_,
            user,
            reason,
            k.notices(name),
        ]
        answer = run(self._scripts.rollback, keys, args)
        self._raise_for(answer, what, name, previous.version)
        log.info(
            "rolled back %s from %s to %s by %s/%s: %s",
            name,
            current,
            previous,
            actor_,
            user,
            reason,
        )
        return _with_who(
            _move_entry(answer, "rollback", CHAMPION), previous.version, actor_, user, reason
        )

    @_talks_to_redis
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
        k = self.keys
        action = "reject" if status == "rejected" else status
        what = f"{action} {check_model_name(name)} v{version}"
        actor_, user = self._who(actor)
        answer = run(
            self._scripts.reject,
            [k.version(name, version), k.aliases(name), k.history(name)],
            [version, actor_, user, reason, status],
        )
        if answer[0] == "unchanged":
            return None
        self._raise_for(answer, what, name, version)
        log.info("%s %s v%d by %s/%s: %s", status, name, version, actor_, user, reason)
        return _with_who(_plain_entry(answer[1], action), version, actor_, user, reason)

    # -- retention -------------------------------------------------------------------
    @_talks_to_redis
    def delete_version(
        self, name: str, version: int, *, reason: str, actor: str | None = None
    ) -> HistoryEntry | None:
        """Delete a version's artifact, keeping its metadata as a tombstone. Refused
        while an alias points at it or it is a rollback target. None if already gone."""
        k = self.keys
        what = f"delete {check_model_name(name)} v{version}"
        actor_, user = self._who(actor)
        answer = run(
            self._scripts.delete_artifact,
            [
                k.version(name, version),
                k.artifact(name, version),
                k.aliases(name),
                k.previous_champions(name),
                k.history(name),
            ],
            [version, actor_, user, reason, now_iso()],
        )
        if answer[0] == "unchanged":
            return None
        self._raise_for(answer, what, name, version)
        log.info("deleted the artifact of %s v%d by %s/%s: %s", name, version, actor_, user, reason)
        return _with_who(_plain_entry(answer[1], "delete"), version, actor_, user, reason)

    @_talks_to_redis
    def apply_retention(self, name: str, *, keep: int | None = None) -> list[int]:
        """Delete the artifacts of all but the newest ``keep`` versions (default: the
        ``keep_versions`` setting), never one an alias points at nor a rollback target.
        The versions whose artifacts were deleted, oldest first."""
        keep = self.keep_versions if keep is None else keep
        if keep < 1:
            raise InvalidVersionError(f"retention must keep at least one version, not {keep}")
        versions_key = self.keys.versions(check_model_name(name))
        raw: list[bytes] = cast(Any, self.client.zrange(versions_key, 0, -keep - 1))
        numbers = [int(_text(v)) for v in raw]
        with self.client.pipeline(transaction=False) as pipe:
            for number in numbers:
                pipe.hexists(self.keys.version(name, number), "deleted_at")
            gone = pipe.execute()
        deleted = []
        for number in (n for n, tombstone in zip(numbers, gone, strict=True) if not tombstone):
            try:
                entry = self.delete_version(name, number, reason=f"retention: keep the last {keep}")
            except VersionStateError:
                continue
            if entry is not None:
                deleted.append(number)
        if deleted:
            log.info("retention of %s (keep %d) deleted the artifacts of %s", name, keep, deleted)
        return deleted

    # -- reports ---------------------------------------------------------------------
    @_talks_to_redis
    def put_report(self, name: str, version: int, files: Mapping[str, bytes]) -> None:
        """Store report files (file name -> bytes) with a version; same names replace."""
        for file_name in files:
            _check_file_name(file_name)
        if not files:
            return
        answer = run(
            self._scripts.put_report,
            [self.keys.version(check_model_name(name), version), self.keys.report(name, version)],
            [item for pair in files.items() for item in pair],
        )
        self._raise_for(answer, f"report of {name} v{version}", name, version)

    @_talks_to_redis
    def get_report(self, name: str, version: int) -> dict[str, bytes]:
        """The report files of a version (file name -> bytes); empty if there are none."""
        self.get_version(name, version)
        raw = cast(dict[bytes, bytes], self.client.hgetall(self.keys.report(name, version)))
        return {key.decode(): value for key, value in sorted(raw.items())}

    # -- export and import -----------------------------------------------------------
    @_talks_to_redis
    def export_version(self, name: str, version: int, path: Path) -> ModelVersion:
        """Write a version (manifest, signature, state and artifact) to ``path``; it is
        verified first, so a tampered version is never exported."""
        result = self.verify(name, version)
        if not result.ok:
            raise IntegrityError(f"refusing to export: {result.detail}")
        fields, data = self._fetch(name, version)
        if data is None:
            raise IntegrityError(f"{name} v{version}: the artifact is missing from Redis")
        transfer.write(path, fields, data)
        return version_from_fields(fields)

    @_talks_to_redis
    def import_version(self, path: Path, *, trust: Verifier | None = None) -> ModelVersion:
        """Store the version exported to ``path`` as a new version of its model.

        Before anything is stored, the file's signature (by a key this registry trusts,
        or one of ``trust``'s), digest and scikit-learn version are checked, then the
        artifact is unpickled and its golden sample must reproduce. The new version is
        signed by this registry's key and records where it came from.
        """
        self._require_signer()
        self.ping()
        exported = transfer.read(path, self.max_artifact_bytes)
        check_model_name(exported.name)
        keys = dict(self.trust.verifier.keys) | (dict(trust.keys) if trust else {})
        manifest, signed_by = verified_manifest(
            manifest_bytes=exported.manifest,
            signature=exported.signature,
            key_id=exported.key_id,
            data=exported.data,
            name=exported.name,
            version=exported.version,
            trust=Trust(Verifier(keys), self.trust.allow_unsigned),
        )
        what = f"{exported.name} v{exported.version} from {path}"
        unpickled = unpickle_checked(manifest, exported.data, self.rows_builder, what)
        self._check_serves(manifest, unpickled.pipeline, what)
        body = {k: v for k, v in manifest.items() if k not in ("format", "name", "version")}
        body["imported_from"] = {
            "name": exported.name,
            "version": exported.version,
            "digest": manifest["artifact"]["digest"],
            "signing_key_id": signed_by,
            "imported_at": now_iso(),
        }
        stored = self._store(
            exported.name, body, exported.data, tags=exported.tags, description=exported.description
        )
        log.info("imported %s as %s v%d", what, stored.name, stored.version)
        return stored

    def _check_serves(self, manifest: Mapping[str, Any], pipeline: Any, what: str) -> None:
        """Check an exported version as a worker would serve it (schema version, golden
        scores through the domain's scorer) before it is stored."""
        entity = version_from_fields(
            {b"manifest": canonical_json(manifest), b"status": b"candidate"}
        )
        loaded = LoadedModel(entity, pipeline, 0.0, 0, None)
        try:
            serving.activate(loaded, get_domain(entity.domain))
        except UnknownDomainError as exc:
            raise InvalidVersionError(f"refusing to import {what}: {exc}") from exc
        except RegistryError as exc:
            raise type(exc)(f"refusing to import {what}: {exc}") from exc

    # -- helpers ---------------------------------------------------------------------
    def _raise_for(self, answer: list[str], what: str, name: str, version: int) -> None:
        status = answer[0]
        if status == "ok":
            return
        if status == "no_version":
            raise self._missing(name, version)
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
        kind, message = kinds.get(status, (RegistryStorageError, f"unexpected answer {answer}"))
        raise kind(f"{what}: {message}")

    def _who(self, actor: str | None) -> tuple[str, str]:
        # The Redis user is asked once: a client's credentials do not change.
        if self._user is None:
            self._user = _text(self.client.acl_whoami())
        return actor or self.actor, self._user


def _may_serve(version: ModelVersion, target: AliasTarget) -> bool:
    return (
        version.target == target
        and version.has_artifact
        and version.status not in ("rejected", "rolled_back")
    )


def _flag(value: bool) -> str:
    return "1" if value else ""


def _reviewed(answer: list[str]) -> bool:
    # A move's script answers ``reviewed`` fifth: '1' when it moved a rolled-back version.
    return len(answer) > 4 and answer[4] == "1"


def _shown(encoded: str) -> str:
    target = AliasTarget.decode(encoded)
    return str(target) if target else "nothing"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _key_id(fields: Mapping[bytes, bytes]) -> str | None:
    return (fields.get(b"key_id") or b"").decode() or None


def _expected(value: AliasTarget | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, AliasTarget):
        return value.encode()
    return str(int(value))


def _entry(entry_id: str, fields: Mapping[str, str]) -> HistoryEntry:
    millis = int(entry_id.split("-", maxsplit=1)[0])
    version = fields.get("version") or ""
    return HistoryEntry(
        id=entry_id,
        time=datetime.fromtimestamp(millis / 1000, UTC),
        action=fields.get("action", ""),
        alias=fields.get("alias") or None,
        from_target=AliasTarget.decode(fields.get("from")),
        to_target=AliasTarget.decode(fields.get("to")),
        version=int(version) if version.isdigit() else None,
        actor=fields.get("actor", ""),
        user=fields.get("user", ""),
        reason=fields.get("reason", ""),
        reviewed=fields.get("reviewed") == "1",
    )


def _move_entry(answer: list[str], action: str, alias: str) -> HistoryEntry:
    # A move's script answers: ok, stream id, from, to.
    return _entry(answer[1], {"action": action, "alias": alias, "from": answer[2], "to": answer[3]})


def _plain_entry(entry_id: str, action: str) -> HistoryEntry:
    return _entry(entry_id, {"action": action})


def _with_who(
    entry: HistoryEntry, version: int, actor: str, user: str, reason: str, *, reviewed: bool = False
) -> HistoryEntry:
    return HistoryEntry(
        id=entry.id,
        time=entry.time,
        action=entry.action,
        alias=entry.alias,
        from_target=entry.from_target,
        to_target=entry.to_target,
        version=version,
        actor=actor,
        user=user,
        reason=reason,
        reviewed=reviewed,
    )


def _aliases_of(aliases: Mapping[bytes, bytes], version: int) -> tuple[str, ...]:
    prefix = f"{version} ".encode()
    return tuple(sorted(k.decode() for k, v in aliases.items() if v.startswith(prefix)))


def _threshold(value: float) -> float:
    threshold = float(value)
    if not 0.0 <= threshold <= 1.0:
        raise InvalidVersionError(f"threshold {value!r} is not a score between 0 and 1")
    return threshold


def _golden_events(events: Sequence[Mapping[str, Any]]) -> list[Any]:
    if not events:
        raise InvalidVersionError("golden_events: at least one event is needed")
    if len(events) > _MAX_GOLDEN_EVENTS:
        raise InvalidVersionError(f"golden_events: at most {_MAX_GOLDEN_EVENTS} events")
    return [to_json_value(dict(e), f"golden_events[{i}]") for i, e in enumerate(events)]


def _artifact_fields(data: bytes) -> dict[str, Any]:
    return {
        "digest": artifact.digest(data),
        "size": len(data),
        "compression": artifact.COMPRESSION,
        "format": "joblib",
    }


def _check_file_name(file_name: str) -> None:
    if (
        not file_name
        or len(file_name) > _MAX_REPORT_FILE_NAME
        or file_name in (".", "..")
        or any(c in file_name for c in "/\\\0")
    ):
        raise InvalidVersionError(f"report file name {file_name!r} must be a plain file name")
