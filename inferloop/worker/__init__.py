"""The streaming inference worker.

``Worker(settings, domain).run()`` consumes ``<domain>`` in the group
``inferloop-<domain>``, validates each polled batch with the domain's schema, scores
every valid event with the registry's champion in one vectorised call, produces a
prediction per event to ``<domain>.predictions`` (key = event id) and a dead letter per
invalid message to ``<domain>.dlq``, then commits. See :mod:`inferloop.worker.loop`.

The loop (and with it scikit-learn) is imported on first use, so the light modules
(``dlq``, ``lag``, ``supervisor``) stay quick for the CLI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from inferloop.worker.errors import (
    FaultInjectedError,
    ModelRefusedError,
    ProducerFencedOutError,
    TopicMissingError,
    WorkerConfigError,
    WorkerError,
)

if TYPE_CHECKING:
    from inferloop.worker.loop import RunLimits, RunSummary, Worker, transactional_id

__all__ = [
    "FaultInjectedError",
    "ModelRefusedError",
    "ProducerFencedOutError",
    "RunLimits",
    "RunSummary",
    "TopicMissingError",
    "Worker",
    "WorkerConfigError",
    "WorkerError",
    "transactional_id",
]

_LAZY = {"RunLimits", "RunSummary", "Worker", "transactional_id"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("inferloop.worker.loop"), name)
    raise AttributeError(f"module 'inferloop.worker' has no attribute {name!r}")
