"""Errors of the retraining job and its service: one root, one-line subclasses."""

from __future__ import annotations

from inferloop.errors import InferloopError


class RetrainError(InferloopError):
    """Root of every error the retrain package raises on purpose."""


class LockHeldError(RetrainError):
    """Another retrain of the domain holds the lease; the message names the holder."""

    def __init__(self, message: str, holder: str | None) -> None:
        super().__init__(message)
        self.holder = holder


class RetrainPermissionError(RetrainError): ...


class SnapshotError(RetrainError): ...


class NotEnoughDataError(RetrainError): ...


class ScheduleError(RetrainError): ...


class TriggerError(RetrainError): ...


class TriggerTimeoutError(TriggerError): ...


class RebuildError(RetrainError): ...


class RebuildMismatchError(RebuildError): ...


class CancelledError(RetrainError): ...
