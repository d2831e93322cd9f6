"""The HTTP endpoint of one worker process: ``/metrics``, ``/health/live``, ``/health/ready``.

Live: the process answers and its loop has turned within the poll interval Kafka
allows. Ready: a model is loaded and the worker is not shutting down. A worker with no
partitions (more workers than partitions) is idle, which is ready, not unready.
Degraded (still live, since a restart would not help): the champion failed verification
and an earlier version serves, or none verifies and nothing is consumed; the body says why.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from inferloop.httpserve import BackgroundHTTPServer, Reply
from inferloop.worker.errors import WorkerConfigError
from inferloop.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)


@dataclass
class HealthState:
    """What the loop tells the endpoint; plain attribute writes from the loop thread."""

    domain: str
    max_loop_gap_s: float
    state: str = "starting"
    model_version: int | None = None
    partitions: int = 0
    refused_versions: list[int] = field(default_factory=list)
    redis_ok: bool = True
    # Why the worker does not serve the champion, while it does not (None: it does).
    degraded_reason: str | None = None
    last_turn: float = field(default_factory=time.monotonic)

    def turned(self) -> None:
        """The loop completed one more turn."""
        self.last_turn = time.monotonic()

    def live(self) -> bool:
        """The loop turns often enough for Kafka to keep us in the group."""
        return time.monotonic() - self.last_turn <= self.max_loop_gap_s

    def ready(self) -> bool:
        """A model is loaded and the worker is not on its way out."""
        return self.model_version is not None and self.state not in ("stopping", "stopped")

    def as_dict(self) -> dict[str, Any]:
        """The state as JSON-ready values."""
        return {
            "domain": self.domain,
            "state": "idle" if self.state == "running" and self.partitions == 0 else self.state,
            "live": self.live(),
            "ready": self.ready(),
            "model_version": self.model_version,
            "partitions": self.partitions,
            "refused_versions": self.refused_versions,
            "redis_ok": self.redis_ok,
            "degraded": self.degraded_reason is not None,
            "degraded_reason": self.degraded_reason,
            "seconds_since_loop_turn": round(time.monotonic() - self.last_turn, 3),
        }


def health_server(
    host: str, port: int, metrics: WorkerMetrics, health: HealthState
) -> BackgroundHTTPServer:
    """``/metrics``, liveness (``/health``, ``/health/live``, ``/healthz``) and readiness
    (``/health/ready``, ``/readyz``) on ``host:port``, not yet started."""

    def state(ok: Callable[[], bool]) -> Callable[[], Reply]:
        return lambda: (
            200 if ok() else 503,
            "application/json",
            json.dumps(health.as_dict()).encode() + b"\n",
        )

    live, ready = state(health.live), state(health.ready)
    routes = {
        "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest(metrics.registry)),
        **dict.fromkeys(("/health", "/health/live", "/healthz"), live),
        **dict.fromkeys(("/health/ready", "/readyz"), ready),
    }
    try:
        return BackgroundHTTPServer(routes, host, port, name="worker-http")
    except OSError as exc:
        raise WorkerConfigError(
            f"cannot serve metrics on {host}:{port}: {exc.strerror} (set "
            "INFERLOOP_WORKER__METRICS_PORT to a free port, or 0 for any)"
        ) from exc
