"""Errors of the streaming worker: one root, one-line subclasses."""

from __future__ import annotations

from inferloop.errors import InferloopError


class WorkerError(InferloopError):
    """Root of every error the worker raises on purpose."""


class WorkerConfigError(WorkerError): ...


class TopicMissingError(WorkerError): ...


class ProducerFencedOutError(WorkerError): ...


class ModelRefusedError(WorkerError): ...


class NoChampionError(WorkerError): ...


class ShutdownTimeoutError(WorkerError): ...


class FaultInjectedError(WorkerError): ...


class DeadLetterError(WorkerError): ...
