"""Errors of batch scoring: one root, one-line subclasses."""

from __future__ import annotations

from inferloop.errors import InferloopError


class BatchError(InferloopError):
    """Root of every error ``inferloop score`` raises on purpose."""


class InputError(BatchError):
    """The input or output file cannot be opened as asked (the message names it)."""


class TopicRangeError(BatchError):
    """A topic range that cannot be read (unknown topic, bad bounds, no progress)."""


class ModelMismatchError(BatchError):
    """The version named is not a model of the domain being scored."""


class OutputError(BatchError):
    """Predictions could not be written to their file or topic."""
