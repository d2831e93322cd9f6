"""The monitor's state in Redis, written with the offsets it was built from.

Everything a batch changes (the next offsets, entries appended to and dropped from the
window, counters, the served sample, drift detectors) moves in one ``MULTI/EXEC``,
under a ``WATCH`` of the monitor's lease: a monitor that lost its lease to another
writes nothing. After a crash the monitor reads its state back and seeks to the
offsets stored with it, so no label is lost or counted twice. A batch's drift alarms
go into the domain's alarm list in that same transaction; the policy's other alarms and
its actions (``KeptAction``) into their list in the transaction that stores the policy
state they advanced.

Each evaluation's snapshot and the watched versions' history points (the format and
bounds are ``inferloop/ops/monitor_history.py``'s) are written in one ``MULTI/EXEC``
too, so the history never holds a point the status did not show.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis

from inferloop.keys import Keys
from inferloop.monitor.errors import LeaseHeldError, LeaseLostError
from inferloop.monitor.window import Entry
from inferloop.ops.monitor_history import (
    ACTIONS_KEPT,
    ALARMS_KEPT,
    HISTORY_EVERY_S,
    HISTORY_MAX_AGE_S,
    HISTORY_POINTS,
    DriftAlarm,
    HistoryPoint,
    KeptAction,
    points_of,
)

log = logging.getLogger(__name__)

# The offsets hash's field naming the store (its token) that wrote the state last.
WRITER_FIELD = "writer"
# The oldest points of a history list read before a write to drop the ones past the age
# bound (points arrive in time order: a few per write at most expire).
_AGE_PROBE = 16


@dataclass(frozen=True)
class Served:
    """What served one sampled event: its version and score, and when it was seen."""

    version: int
    score: float
    seq: int

    def encode(self) -> str:
        """The stored form."""
        return f"{self.version} {self.score!r} {self.seq}"

    @classmethod
    def decode(cls, raw: bytes) -> Served:
        """The sample stored as ``raw``."""
        version, score, seq = raw.decode().split(" ")
        return cls(int(version), float(score), int(seq))


@dataclass
class Stored:
    """The state read back at start."""

    offsets: dict[str, int]
    entries: list[Entry]
    counts: dict[str, int]
    served: dict[int, Served]
    detectors: dict[str, dict[str, Any]]
    actions: list[KeptAction] = field(default_factory=list)  # oldest first


@dataclass
class Changes:
    """What one batch changes, written in one step."""

    offsets: dict[str, int] = field(default_factory=dict)
    appended: list[Entry] = field(default_factory=list)
    dropped: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    served_put: dict[int, Served] = field(default_factory=dict)
    served_del: set[int] = field(default_factory=set)
    detectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    alarms: list[DriftAlarm] = field(default_factory=list)
    actions: list[KeptAction] = field(default_factory=list)


def offset_field(topic_kind: str, partition: int) -> str:
    """The offsets hash's field of one partition: ``labels:3``, ``predictions:0``."""
    return f"{topic_kind}:{int(partition)}"


class StateStore:
    """The monitor state of one domain, and the lease that makes its writer unique."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        domain: str,
        lease_s: float,
        *,
        history_every_s: float = HISTORY_EVERY_S,
    ) -> None:
        self.client = client
        self.keys = keys
        self._history_every_s = history_every_s
        self._history_at: float | None = None  # monotonic time of the last history write
        self.domain = domain
        self.token = uuid.uuid4().hex
        # The writer of the stored state as this store last knew it (read by ``load``,
        # then this store's token once it committed): an expired lease is taken back
        # only while the stored writer is still that one (nobody wrote in between).
        self._last_writer: bytes | None = None
        self._lease_ms = int(lease_s * 1000)
        self._k = {
            "offsets": keys.monitor_offsets(domain),
            "window": keys.monitor_window(domain),
            "counts": keys.monitor_counts(domain),
            "served": keys.monitor_served(domain),
            "detectors": keys.monitor_detectors(domain),
            "status": keys.monitor_status(domain),
            "lease": keys.monitor_lease(domain),
            "alarms": keys.monitor_alarms(domain),
            "actions": keys.monitor_actions(domain),
        }

    # -- the lease ---------------------------------------------------------------------
    def try_acquire(self) -> bool:
        """Take the domain's lease if nobody holds it (or it is ours already)."""
        lease = self._k["lease"]
        if self.client.set(lease, self.token, nx=True, px=self._lease_ms):
            return True
        return self.client.get(lease) == self.token.encode()

    def holder(self) -> str | None:
        """The token of the lease's holder, if any."""
        raw: bytes | None = self.client.get(self._k["lease"])  # type: ignore[assignment]
        return raw.decode() if raw else None

    def acquire(self) -> None:
        """Take the lease or raise :class:`LeaseHeldError`."""
        if not self.try_acquire():
            raise LeaseHeldError(f"another monitor of {self.domain} holds its lease")

    def release(self) -> None:
        """Give the lease up, if still ours."""
        release_lease(self.client, self._k["lease"], self.token)

    # -- state ---------------------------------------------------------------------------
    def load(self) -> Stored:
        """The state as the last committed batch left it (one snapshot)."""
        k = self._k
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hgetall(k["offsets"])
            pipe.lrange(k["window"], 0, -1)
            pipe.hgetall(k["counts"])
            pipe.hgetall(k["served"])
            pipe.hgetall(k["detectors"])
            pipe.lrange(k["actions"], 0, -1)
            offsets, window, counts, served, detectors, actions = pipe.execute()
        self._last_writer = offsets.pop(WRITER_FIELD.encode(), None)
        samples = {int(h): Served.decode(v) for h, v in served.items()}
        return Stored(
            offsets={f.decode(): int(v) for f, v in offsets.items()},
            entries=[Entry.unpack(raw) for raw in window],
            counts={f.decode(): int(v) for f, v in counts.items()},
            served=dict(sorted(samples.items(), key=lambda item: item[1].seq)),
            detectors={f.decode(): json.loads(v) for f, v in detectors.items()},
            actions=[KeptAction.decode(raw) for raw in actions],
        )

    def commit(self, changes: Changes) -> None:
        """Write ``changes`` and renew the lease in one transaction, unless another
        monitor holds the lease (:class:`LeaseLostError`, nothing written)."""
        lease, offsets = self._k["lease"], self._k["offsets"]
        with self.client.pipeline() as pipe:
            try:
                pipe.watch(lease, offsets)  # type: ignore[no-untyped-call]
                if not self._still_ours(pipe):
                    raise LeaseLostError(f"the monitor of {self.domain} lost its lease")
                if self._applied(pipe, changes):
                    return
                pipe.multi()
                self._queue(pipe, changes)
                pipe.hset(offsets, WRITER_FIELD, self.token)
                pipe.set(lease, self.token, px=self._lease_ms)
                pipe.execute()
            except redis.WatchError as exc:
                raise LeaseLostError(f"the monitor of {self.domain} lost its lease") from exc
        self._last_writer = self.token.encode()

    def _still_ours(self, pipe: Any) -> bool:
        """Whether this store may write: it holds the lease, or the lease expired and is
        free (a long model load) and nobody wrote since this store last did (another
        monitor may have taken the lease, written and released it meanwhile)."""
        holder = pipe.get(self._k["lease"])
        if holder == self.token.encode():
            return True
        return holder is None and pipe.hget(self._k["offsets"], WRITER_FIELD) == self._last_writer

    def _applied(self, pipe: Any, changes: Changes) -> bool:
        """Whether ``changes`` are stored already: a retry after a connection lost while
        EXEC's answer was on its way must not apply them twice (the offsets tell)."""
        if not changes.offsets:
            return False
        fields = list(changes.offsets)
        stored = pipe.hmget(self._k["offsets"], fields)
        return all(
            raw is not None and int(raw) == changes.offsets[f]
            for f, raw in zip(fields, stored, strict=True)
        )

    def _queue(self, pipe: Any, changes: Changes) -> None:
        k = self._k
        if changes.appended:
            pipe.rpush(k["window"], *(e.pack() for e in changes.appended))
        if changes.dropped:
            pipe.ltrim(k["window"], changes.dropped, -1)
        for name, n in changes.counts.items():
            pipe.hincrby(k["counts"], name, n)
        if changes.served_put:
            mapping = {str(h): s.encode() for h, s in changes.served_put.items()}
            pipe.hset(k["served"], mapping=mapping)
        if changes.served_del:
            pipe.hdel(k["served"], *(str(h) for h in changes.served_del))
        if changes.detectors:
            mapping = {n: json.dumps(s) for n, s in changes.detectors.items()}
            pipe.hset(k["detectors"], mapping=mapping)
        if changes.alarms:
            pipe.rpush(k["alarms"], *(a.encode() for a in changes.alarms))
            pipe.ltrim(k["alarms"], -ALARMS_KEPT, -1)
        if changes.actions:
            pipe.rpush(k["actions"], *(a.encode() for a in changes.actions))
            pipe.ltrim(k["actions"], -ACTIONS_KEPT, -1)
        if changes.offsets:
            pipe.hset(k["offsets"], mapping={f: str(o) for f, o in changes.offsets.items()})

    def put_status(self, status: dict[str, Any]) -> None:
        """Store the last evaluation for ``inferloop monitor status`` and the console and,
        at most every ``history_every_s``, each watched version's point of it in its
        history list, in one transaction (each list trimmed by count and age)."""
        points = self._due_points(status)
        expired = {v: self._expired(v, p.at_s) for v, p in points.items()}
        age_ms = int(HISTORY_MAX_AGE_S * 1000)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self._k["status"], json.dumps(status, separators=(",", ":")))
            for version, point in points.items():
                key = self.keys.monitor_history(self.domain, version)
                pipe.rpush(key, point.encode())
                pipe.ltrim(key, expired[version], -1)
                pipe.ltrim(key, -HISTORY_POINTS, -1)
                pipe.pexpire(key, age_ms)
            pipe.execute()
        if points:
            self._history_at = time.monotonic()

    def _due_points(self, status: dict[str, Any]) -> dict[int, HistoryPoint]:
        last = self._history_at
        if last is not None and time.monotonic() - last < self._history_every_s:
            return {}
        return points_of(status)

    def _expired(self, version: int, now_s: float) -> int:
        """How many of the oldest points of ``version``'s list are past the age bound."""
        key = self.keys.monitor_history(self.domain, version)
        oldest: list[bytes] = self.client.lrange(key, 0, _AGE_PROBE - 1)  # type: ignore[assignment]
        cutoff = now_s - HISTORY_MAX_AGE_S
        return sum(1 for raw in oldest if HistoryPoint.decode(raw).at_s < cutoff)


def release_lease(client: redis.Redis, key: str, token: str) -> bool:
    """Delete the lease ``key`` if it still holds ``token`` (compare-and-delete: a lease
    that expired and was taken by another holder meanwhile is left alone); whether it
    was deleted."""
    with client.pipeline() as pipe:
        try:
            pipe.watch(key)  # type: ignore[no-untyped-call]
            if pipe.get(key) != token.encode():
                return False
            pipe.multi()
            pipe.delete(key)
            pipe.execute()
        except redis.WatchError:
            return False
    return True


def read_status(client: redis.Redis, keys: Keys, domain: str) -> dict[str, Any] | None:
    """The last evaluation a monitor of ``domain`` stored, if any."""
    raw = client.get(keys.monitor_status(domain))
    return None if raw is None else dict(json.loads(raw))
