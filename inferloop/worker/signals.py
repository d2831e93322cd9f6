"""Shutdown requests: signal handlers that only change state, and a grace-period watchdog.

First SIGTERM or SIGINT: the handler records the request and restores the default
action of both signals; the loop stops polling, finishes and commits the batches in
hand and closes. A second signal then ends the process at once (the default action).
If the orderly shutdown outlives the grace period, the watchdog ends the process.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import FrameType

log = logging.getLogger(__name__)

EXIT_GRACE_EXCEEDED = 3
HANDLED = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Whether the worker was asked to stop, and since when."""

    def __init__(self) -> None:
        self.requested = False
        self.reason = ""
        self.at = 0.0

    def request(self, reason: str) -> None:
        """Ask the loop to stop after the batch in hand (idempotent)."""
        if not self.requested:
            self.at = time.monotonic()
            self.reason = reason
            self.requested = True

    def install(self, *, supervised: bool = False) -> None:
        """Handle SIGTERM and SIGINT in this (main) thread.

        A supervised child ignores SIGINT: a Ctrl-C reaches the whole process group,
        and the supervisor forwards it as one SIGTERM (a second SIGINT would otherwise
        end the child at once).
        """
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, signal.SIG_IGN if supervised else self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.request(signal.Signals(signum).name)
        # The next one takes the default action: the process ends now.
        for sig in HANDLED:
            signal.signal(sig, signal.SIG_DFL)


def start_watchdog(stop: StopRequest, grace_s: float) -> threading.Thread:
    """End the process if it is still running ``grace_s`` after the stop request.

    A thread, not the handler: the handler only records the request; this notices it
    even while the loop is blocked (waiting on a broker that does not answer).
    """

    def watch() -> None:
        while not stop.requested:
            time.sleep(0.1)
        remaining_s = grace_s - (time.monotonic() - stop.at)
        if remaining_s > 0:
            time.sleep(remaining_s)
        log.error("still running %.1f s after %s; exiting now", grace_s, stop.reason)
        logging.shutdown()
        os._exit(EXIT_GRACE_EXCEEDED)

    thread = threading.Thread(target=watch, name="shutdown-watchdog", daemon=True)
    thread.start()
    return thread
