"""Who may use the console: tokens stored as salted scrypt hashes, two roles, a login
rate limit.

A stored hash reads ``<name>$scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>``; the name is
the person's, recorded as the actor of what they do. A token is checked against every
hash of both roles in constant time each, so the answer takes as long for any token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from inferloop.console.errors import TokenHashError
from inferloop.settings import ConsoleSettings

Role = Literal["viewer", "operator"]

# scrypt's cost: 16 MiB and about 50 ms a check, the interactive figures of RFC 7914.
_N, _R, _P = 2**14, 8, 1
_NAME = re.compile(r"^[A-Za-z0-9_.@\-]{1,64}$")


def hash_token(name: str, token: str, *, salt: bytes | None = None) -> str:
    """The stored form of ``token`` for the person ``name``."""
    if not _NAME.match(name):
        raise TokenHashError(f"name {name!r}: 1-64 letters, digits, '_', '.', '@' or '-'")
    if len(token) < 16:
        raise TokenHashError("a token needs 16 characters at least")
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = _scrypt(token, salt, _N, _R, _P)
    return f"{name}$scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def new_token() -> str:
    """A random token (32 bytes, URL-safe)."""
    return secrets.token_urlsafe(32)


def _scrypt(token: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(token.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024)


@dataclass(frozen=True)
class StoredHash:
    """One parsed stored hash."""

    name: str
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    @classmethod
    def parse(cls, text: str) -> StoredHash:
        """The hash ``text`` holds; TokenHashError when it is not one."""
        parts = text.split("$")
        if len(parts) != 7 or parts[1] != "scrypt" or not _NAME.match(parts[0]):
            raise TokenHashError("a token hash reads NAME$scrypt$N$R$P$SALT$HASH")
        try:
            n, r, p = int(parts[2]), int(parts[3]), int(parts[4])
            return cls(parts[0], n, r, p, bytes.fromhex(parts[5]), bytes.fromhex(parts[6]))
        except ValueError as exc:
            raise TokenHashError(f"a token hash's numbers or hex do not parse: {exc}") from exc

    def matches(self, token: str) -> bool:
        """Whether ``token`` is the one hashed here."""
        return hmac.compare_digest(_scrypt(token, self.salt, self.n, self.r, self.p), self.digest)


@dataclass(frozen=True)
class Identity:
    """A logged-in person."""

    name: str
    role: Role


class TokenBook:
    """The hashes of both roles, parsed once."""

    def __init__(self, viewers: Iterable[str], operators: Iterable[str]) -> None:
        self._entries = [(StoredHash.parse(h), "viewer") for h in viewers] + [
            (StoredHash.parse(h), "operator") for h in operators
        ]

    @classmethod
    def from_settings(cls, section: ConsoleSettings) -> TokenBook:
        """The book of ``console.viewer_token_hashes`` and ``operator_token_hashes``."""
        return cls(section.viewer_token_hashes, section.operator_token_hashes)

    def __len__(self) -> int:
        return len(self._entries)

    def identify(self, token: str) -> Identity | None:
        """Who ``token`` belongs to (the operator role wins), or None."""
        found: Identity | None = None
        for stored, role in self._entries:
            # Every entry is checked, so the time does not tell which one matched.
            if stored.matches(token) and (found is None or role == "operator"):
                found = Identity(stored.name, "operator" if role == "operator" else "viewer")
        return found


class LoginLimiter:
    """At most ``max_failures`` failed logins per client within ``window_s``."""

    def __init__(self, max_failures: int, window_s: float) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def blocked(self, client: str, now: float | None = None) -> bool:
        """Whether ``client`` has used up its failures for now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = self._failures[client]
            while recent and recent[0] <= now - self.window_s:
                recent.popleft()
            return len(recent) >= self.max_failures

    def failed(self, client: str, now: float | None = None) -> None:
        """Count one failed login of ``client``."""
        with self._lock:
            self._failures[client].append(time.monotonic() if now is None else now)


def csrf_token() -> str:
    """A fresh CSRF token for a session."""
    return secrets.token_urlsafe(32)


def same_token(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; False when either is missing."""
    return bool(given and expected) and hmac.compare_digest(str(given), str(expected))
