"""The lease lock that lets one retrain of a domain run at a time, across hosts.

The lock is one Redis string (``keys.retrain_lock(domain)``) whose value is the
holder's token and whose expiry is the lease. The token names the holder (host,
process, what started it) so a second request can say who is running. A background
thread renews the lease while the job runs, only if the key still holds this token; a
run whose lease expired (a stalled process) and was taken by another can never renew
it back, and the registry checks the same token in the atomic promotion step.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass

import redis

from inferloop.retrain.errors import LockHeldError

log = logging.getLogger(__name__)

_SEP = "|"

# Extend the lease only while the key still holds our token.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# Delete the key only while it still holds our token.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def default_holder(role: str) -> str:
    """``host:pid:role``: who a lease belongs to, as a second request will show it."""
    return f"{socket.gethostname()}:{os.getpid()}:{role}"


def make_token(holder: str, now_s: float | None = None) -> str:
    """A fresh token: the holder, the time it was taken and a random part."""
    taken = time.time() if now_s is None else now_s
    clean = holder.replace(_SEP, "/")
    return f"{clean}{_SEP}{taken:.3f}{_SEP}{uuid.uuid4().hex}"


@dataclass(frozen=True)
class HolderInfo:
    """What a token says about the holder of a lease."""

    holder: str
    acquired_at_s: float | None
    ttl_s: float | None

    def describe(self) -> str:
        """One line for people: who, since when, and when the lease ends."""
        parts = [self.holder]
        if self.acquired_at_s is not None:
            parts.append(
                "since " + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.acquired_at_s))
            )
        if self.ttl_s is not None:
            parts.append(f"lease ends in {self.ttl_s:.0f} s")
        return ", ".join(parts)


def parse_token(token: str, ttl_s: float | None = None) -> HolderInfo:
    """The holder recorded in ``token`` (any string is accepted; unknown ones as is)."""
    pieces = token.split(_SEP)
    if len(pieces) == 3:
        try:
            return HolderInfo(pieces[0], float(pieces[1]), ttl_s)
        except ValueError:
            pass
    return HolderInfo(token, None, ttl_s)


class Lease:
    """A held lease: its key, its token, and a renewer thread until released."""

    def __init__(self, client: redis.Redis, key: str, token: str, lease_s: float) -> None:
        self.client = client
        self.key = key
        self.token = token
        self.lease_s = lease_s
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def holder(self) -> str:
        """Who holds this lease (the token without its time and random part)."""
        return parse_token(self.token).holder

    @property
    def lost(self) -> bool:
        """Whether a renewal found the key no longer holding this token."""
        return self._lost.is_set()

    def start_renewing(self) -> None:
        """Renew the lease every third of its length until :meth:`release`."""
        self._thread = threading.Thread(
            target=self._renew_loop, name=f"lease-renew {self.key}", daemon=True
        )
        self._thread.start()

    def renew(self) -> bool:
        """Extend the lease now; False (and :attr:`lost`) when another holds the key."""
        ok = bool(self._renew(keys=[self.key], args=[self.token, int(self.lease_s * 1000)]))
        if not ok and not self._lost.is_set():
            self._lost.set()
            log.error("retrain lease lost: %s no longer holds %s", self.token, self.key)
        return ok

    def held(self) -> bool:
        """Whether the key holds this token right now (one GET)."""
        value = self.client.get(self.key)
        return value is not None and _text(value) == self.token

    def _renew_loop(self) -> None:
        interval_s = max(self.lease_s / 3.0, 0.05)
        while not self._stop.wait(interval_s):
            try:
                if not self.renew():
                    return
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                # The lease may still be valid; try again at the next tick.
                log.warning("retrain lease renewal of %s failed: %s", self.key, exc)

    def release(self) -> bool:
        """Stop renewing and delete the key if it still holds this token."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        try:
            return bool(self._release(keys=[self.key], args=[self.token]))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # The lease expires on its own; nothing is lost but time.
            log.warning("releasing retrain lease %s failed: %s", self.key, exc)
            return False

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class LeaseLock:
    """The lease lock of one domain's retrain."""

    def __init__(self, client: redis.Redis, key: str, lease_s: float) -> None:
        self.client = client
        self.key = key
        self.lease_s = lease_s

    def acquire(self, holder: str) -> Lease:
        """Take the lease (``SET NX PX``) and start renewing it, or :class:`LockHeldError`."""
        token = make_token(holder)
        if self.client.set(self.key, token, nx=True, px=int(self.lease_s * 1000)):
            lease = Lease(self.client, self.key, token, self.lease_s)
            lease.start_renewing()
            log.info("retrain lease %s taken by %s", self.key, holder)
            return lease
        info = self.holder()
        who = info.describe() if info else "a holder whose lease just ended"
        raise LockHeldError(
            f"a retrain is already running ({self.key}): held by {who}",
            holder=info.holder if info else None,
        )

    def holder(self) -> HolderInfo | None:
        """Who holds the lease now, or None."""
        value = self.client.get(self.key)
        if value is None:
            return None
        try:
            ttl_ms = self.client.pttl(self.key)
        except redis.exceptions.NoPermissionError:
            # An operator's ACL may read the lock but not ask for its expiry.
            ttl_ms = None
        ttl_s = ttl_ms / 1000.0 if isinstance(ttl_ms, int) and ttl_ms >= 0 else None
        return parse_token(_text(value), ttl_s)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
