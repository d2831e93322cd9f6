"""Errors of the model registry: one root, one-line subclasses, tests assert the type.

Messages name the model and version they are about, so a one-line CLI error or a log
line is enough to act on.
"""

from __future__ import annotations

from inferloop.errors import InferloopError, RedisUnavailableError


class RegistryError(InferloopError):
    """Root of every error the registry raises on purpose."""


class RegistryUnavailableError(RegistryError, RedisUnavailableError):
    """Redis could not be reached; the message names its address."""


class RegistryStorageError(RegistryError):
    """Redis answered with something the registry did not expect."""


class RegistryPermissionError(RegistryError):
    """The Redis user lacks a permission (ACL) the operation needs."""


class InvalidNameError(RegistryError): ...


class ReservedAliasError(InvalidNameError): ...


class InvalidVersionError(RegistryError):
    """What was given to ``register`` cannot make a version (the message names the field)."""


class ModelNotFoundError(RegistryError): ...


class VersionNotFoundError(RegistryError): ...


class AliasNotFoundError(RegistryError): ...


class ArtifactDeletedError(RegistryError):
    """The version's artifact was deleted by retention; its metadata is a tombstone."""


class ArtifactTooLargeError(RegistryError): ...


class IntegrityError(RegistryError):
    """A stored version failed verification; nothing of it was unpickled."""


class DigestMismatchError(IntegrityError): ...


class ManifestMismatchError(IntegrityError):
    """A validly signed manifest belongs to another model or version."""


class SignatureError(IntegrityError): ...


class MissingSignatureError(SignatureError): ...


class UnknownSigningKeyError(SignatureError): ...


class BadSignatureError(SignatureError): ...


class IncompatibleLibraryError(RegistryError):
    """The artifact was built with another scikit-learn minor version."""


class GoldenMismatchError(RegistryError):
    """The loaded model does not reproduce the scores recorded for its golden sample."""


class SchemaMismatchError(RegistryError):
    """The version expects another input schema version than this process validates."""


class SigningKeyError(RegistryError):
    """A key file is missing, unreadable or not an Ed25519 key, or no key is configured."""


class PromotionConflictError(RegistryError):
    """The alias was not where the caller expected it: another move came first."""


class LockLostError(RegistryError):
    """The caller's retrain lock is no longer held by its token: it must not promote."""


class VersionStateError(RegistryError):
    """The version's state forbids the move (rejected, aliased, tombstoned, already there)."""


class NoPreviousChampionError(VersionStateError): ...


class ExportFormatError(RegistryError):
    """A file given to ``import`` is not a registry export."""
