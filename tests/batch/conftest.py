"""Fixtures of the batch-scoring tests: the worker tests' own (settings with quick
timings and trusted keys, a real registry, a champion, the domain's topics, a worker in a
thread), so that ``score`` and a worker are compared under the same champion."""

from __future__ import annotations

from tests.worker.conftest import (
    champion,
    keys,
    model_v1,
    registry,
    topics,
    worker_thread,
    wsettings,
)

__all__ = ["champion", "keys", "model_v1", "registry", "topics", "worker_thread", "wsettings"]
