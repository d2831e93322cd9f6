"""The HTTP endpoint of one worker process: ``/metrics``, ``/health/live``, ``/health/ready``.

Live: the process answers and its loop has turned within the poll interval Kafka
allows. Ready: a model is loaded and the worker is not shutting down. A worker with no
partitions (more workers than partitions) is idle, which is ready, not unready.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

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
            "seconds_since_loop_turn": round(time.monotonic() - self.last_turn, 3),
        }


class HealthServer:
    """A small threaded HTTP server serving metrics and health on ``host:port``."""

    def __init__(self, host: str, port: int, metrics: WorkerMetrics, health: HealthState) -> None:
        handler = _handler(metrics, health)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise WorkerConfigError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror} (set "
                "INFERLOOP_WORKER__METRICS_PORT to a free port, or 0 for any)"
            ) from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="worker-http", daemon=True
        )

    @property
    def port(self) -> int:
        """The port actually bound (useful when 0 asked for any free one)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()


def _handler(metrics: WorkerMetrics, health: HealthState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(metrics.registry))
            elif self.path in ("/health", "/health/live", "/healthz"):
                self._json(200 if health.live() else 503, health.as_dict())
            elif self.path in ("/health/ready", "/readyz"):
                self._json(200 if health.ready() else 503, health.as_dict())
            else:
                self._send(404, "text/plain", b"not found\n")

        def _json(self, status: int, body: dict[str, Any]) -> None:
            self._send(status, "application/json", json.dumps(body).encode() + b"\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: " + format, *args)

    return Handler
