"""Errors of the operator console: one root, one-line subclasses."""

from __future__ import annotations

from inferloop.errors import InferloopError


class ConsoleError(InferloopError):
    """Root of every error the console raises on purpose."""


class ConsoleConfigError(ConsoleError): ...


class TokenHashError(ConsoleError): ...


class ActionRefusedError(ConsoleError): ...
