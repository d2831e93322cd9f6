"""Errors of the shared operations: one root, one-line subclasses."""

from __future__ import annotations

from inferloop.errors import InferloopError


class OpsError(InferloopError):
    """Root of every error the operations module raises on purpose."""


class TopicMissingError(OpsError): ...


class DeadLetterError(OpsError): ...
