"""Errors of the domains package: one root, one-line subclasses."""

from __future__ import annotations

from inferloop.errors import DataNotFoundError, InferloopError


class DomainError(InferloopError): ...


class UnknownDomainError(DomainError): ...


class DatasetNotFoundError(DomainError, DataNotFoundError): ...


class DatasetFormatError(DomainError): ...


class TrainingError(DomainError): ...


class NotCompilableError(DomainError): ...
