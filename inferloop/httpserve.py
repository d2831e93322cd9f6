"""A small HTTP server in a daemon thread, for ``/metrics`` and health endpoints.

The worker and the retrain service each serve a few read-only paths; what differs is
the paths and what they answer, so they pass a route table and share the rest.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

# What a path answers: (HTTP status, content type, body).
Reply = tuple[int, str, bytes]
Routes = Mapping[str, Callable[[], Reply]]


class BackgroundHTTPServer:
    """Serves ``routes`` (exact paths; a query string is ignored) on ``host:port``.

    Binding happens here, so a port in use raises ``OSError`` at once, for the caller to
    name its setting; port 0 binds any free port (see :attr:`port`).
    """

    def __init__(self, routes: Routes, host: str, port: int, *, name: str) -> None:
        self.server = ThreadingHTTPServer((host, port), _handler(routes))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name=name, daemon=True)

    @property
    def port(self) -> int:
        """The port actually bound (useful when 0 asked for any free one)."""
        return int(self.server.server_address[1])

    def start(self) -> None:
        """Serve in the background thread."""
        self.thread.start()

    def stop(self) -> None:
        """Stop serving (if started) and release the port."""
        if self.thread.is_alive():
            self.server.shutdown()
        self.server.server_close()


def _handler(routes: Routes) -> type[BaseHTTPRequestHandler]:
    known = ", ".join(sorted(routes))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = routes.get(self.path.split("?", 1)[0])
            if route is None:
                status, content_type, body = 404, "text/plain", f"not found: try {known}\n".encode()
            else:
                status, content_type, body = route()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: " + format, *args)

    return Handler
