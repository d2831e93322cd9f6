"""Reads of the registry: where an alias points, models, versions, history, fallbacks.

``resolve`` is the hot path: one round trip. Nothing here is verified (``Loader`` does
that) and nothing is written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from inferloop.registry import history as entries
from inferloop.registry.backend import Backend, talks_to_redis, text
from inferloop.registry.entities import (
    CHAMPION,
    AliasTarget,
    HistoryEntry,
    ModelVersion,
    RegisteredModel,
    check_alias,
    check_model_name,
)
from inferloop.registry.errors import ModelNotFoundError
from inferloop.registry.manifest import version_from_fields


class Reads:
    """The registry's reads, on one backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @talks_to_redis
    def resolve(self, name: str, alias: str = CHAMPION) -> AliasTarget | None:
        """Where ``alias`` points (version and digest), None if unset: one round trip."""
        b = self.backend
        key = b.keys.aliases(check_model_name(name))
        return AliasTarget.decode(b.client.hget(key, check_alias(alias)))

    @talks_to_redis
    def get_model(self, name: str) -> RegisteredModel:
        """A registered model with its aliases; ModelNotFoundError if unknown."""
        k = self.backend.keys
        with self.backend.client.pipeline(transaction=False) as pipe:
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

    @talks_to_redis
    def list_models(self) -> list[RegisteredModel]:
        """Every registered model, by name."""
        names = sorted(text(n) for n in self.backend.client.smembers(self.backend.keys.models()))
        return [self.get_model(name) for name in names]

    @talks_to_redis
    def get_version(self, name: str, version: int) -> ModelVersion:
        """One version's metadata (its signature is not checked here: see ``verify``)."""
        b = self.backend
        with b.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(b.keys.version(check_model_name(name), version))
            pipe.hgetall(b.keys.aliases(name))
            fields, aliases = pipe.execute()
        if not fields:
            raise b.missing(name, version)
        return version_from_fields(fields, _aliases_of(aliases, version))

    @talks_to_redis
    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every version of a model, oldest first; ModelNotFoundError if unknown."""
        client, k = self.backend.client, self.backend.keys
        raw: list[bytes] = cast(Any, client.zrange(k.versions(check_model_name(name)), 0, -1))
        numbers = [int(text(v)) for v in raw]
        if not numbers and not client.exists(k.model(name)):
            raise ModelNotFoundError(f"model {name!r} is not registered")
        with client.pipeline(transaction=False) as pipe:
            pipe.hgetall(k.aliases(name))
            for number in numbers:
                pipe.hgetall(k.version(name, number))
            aliases, *hashes = pipe.execute()
        return [
            version_from_fields(fields, _aliases_of(aliases, number))
            for number, fields in zip(numbers, hashes, strict=True)
            if fields
        ]

    @talks_to_redis
    def history(self, name: str, *, limit: int = 100) -> list[HistoryEntry]:
        """The newest ``limit`` entries of a model's history, newest first."""
        key = self.backend.keys.history(check_model_name(name))
        raw: Any = self.backend.client.xrevrange(key, count=limit)
        return [entries.entry(text(i), {text(k): text(v) for k, v in f.items()}) for i, f in raw]

    @talks_to_redis
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


def _may_serve(version: ModelVersion, target: AliasTarget) -> bool:
    return (
        version.target == target
        and version.has_artifact
        and version.status not in ("rejected", "rolled_back")
    )


def _aliases_of(aliases: Mapping[bytes, bytes], version: int) -> tuple[str, ...]:
    prefix = f"{version} ".encode()
    return tuple(sorted(k.decode() for k, v in aliases.items() if v.startswith(prefix)))
