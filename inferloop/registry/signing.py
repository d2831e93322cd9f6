"""Ed25519 signatures over version manifests.

Only the signer (the retrain job, or an operator's ``import``) holds the private key;
workers hold public keys only, several of them so a key can be rotated without
re-signing every stored version at once. A key is named by its id: the first 16 hex
digits of the SHA-256 of its raw public bytes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from inferloop.registry.errors import (
    BadSignatureError,
    MissingSignatureError,
    SigningKeyError,
    UnknownSigningKeyError,
)


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """The id of a public key: 16 hex digits of the SHA-256 of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read the {what} {path}: {exc.strerror or exc}") from exc


@dataclass(frozen=True)
class Signer:
    """Signs manifests with one private key."""

    private_key: Ed25519PrivateKey

    @classmethod
    def from_file(cls, path: Path) -> Signer:
        """The signer whose PEM (PKCS#8, unencrypted) private key is at ``path``."""
        data = _read(path, "signing key")
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(f"{path} is not an unencrypted PEM private key: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
        return cls(key)

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The matching public key."""
        return self.private_key.public_key()

    @property
    def key_id(self) -> str:
        """The id of this signer's key."""
        return key_id_of(self.public_key)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return self.private_key.sign(data)


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The Ed25519 public key in the PEM file at ``path``."""
    data = _read(path, "verify key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{path} is not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


@dataclass(frozen=True)
class Verifier:
    """Checks signatures against a set of trusted public keys, found by key id."""

    keys: Mapping[str, Ed25519PublicKey]

    @classmethod
    def from_keys(cls, keys: Iterable[Ed25519PublicKey]) -> Verifier:
        """A verifier trusting ``keys``."""
        return cls({key_id_of(k): k for k in keys})

    @classmethod
    def from_files(cls, paths: Iterable[Path]) -> Verifier:
        """A verifier trusting the public keys in ``paths``."""
        return cls.from_keys(load_public_key(p) for p in paths)

    def verify(self, data: bytes, signature: bytes | None, key_id: str | None, what: str) -> str:
        """The id of the trusted key that signed ``data``, or a SignatureError about ``what``."""
        if not signature:
            raise MissingSignatureError(f"{what} has no signature; refusing to load it")
        if not key_id or key_id not in self.keys:
            trusted = ", ".join(sorted(self.keys)) or "none"
            raise UnknownSigningKeyError(
                f"{what} is signed by key {key_id or '(unnamed)'}, which is not trusted "
                f"(trusted keys: {trusted}); refusing to load it"
            )
        try:
            self.keys[key_id].verify(signature, data)
        except InvalidSignature as exc:
            raise BadSignatureError(
                f"{what}: the signature does not match key {key_id}; refusing to load it"
            ) from exc
        return key_id


@dataclass(frozen=True)
class KeyPair:
    """Where ``generate_key_pair`` wrote the two halves, and the key's id."""

    private_path: Path
    public_path: Path
    key_id: str


def generate_key_pair(directory: Path, name: str, *, overwrite: bool = False) -> KeyPair:
    """Write ``NAME.key`` (private, mode 0600) and ``NAME.pub`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    private_path, public_path = directory / f"{name}.key", directory / f"{name}.pub"
    if not overwrite:
        for path in (private_path, public_path):
            if path.exists():
                raise SigningKeyError(f"{path} exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_path.unlink(missing_ok=True)
    # Created with 0600 from the start: never world-readable, not even for an instant.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem)
    public_path.write_bytes(public_pem)
    return KeyPair(private_path, public_path, key_id_of(key.public_key()))
