"""``--processes N``: N worker processes of one domain in the same consumer group.

A small supervisor: it starts child ``i`` as ``inferloop worker run DOMAIN --slot i``
(so its metrics port is base + i and its transactional id ends in ``-i``), restarts a
child that crashed (with a growing pause), and forwards SIGTERM/SIGINT to every child.
A second signal is forwarded as SIGKILL, so children exit at once. A child
whose supervisor dies (even by SIGKILL) notices it has been orphaned and stops. Kafka assigns the
partitions; the supervisor coordinates nothing else, and more processes on more
machines scale the same way.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType

from inferloop.backoff import Backoff

log = logging.getLogger(__name__)

RESTART_PAUSE_FIRST_S = 1.0
RESTART_PAUSE_MAX_S = 30.0
# A child that ran this long before crashing is restarted after the first pause again.
STABLE_AFTER_S = 60.0


@dataclass
class Child:
    """One supervised worker process."""

    slot: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: Backoff = field(
        default_factory=lambda: Backoff(RESTART_PAUSE_MAX_S, first_s=RESTART_PAUSE_FIRST_S)
    )
    restart_at: float | None = None
    history: list[int] = field(default_factory=list)


class Supervisor:
    """Runs and watches N children built from ``argv_for(slot)``."""

    def __init__(self, processes: int, child_args: Sequence[str], grace_s: float) -> None:
        self._children = [Child(slot) for slot in range(processes)]
        self._child_args = list(child_args)
        self._grace_s = grace_s
        self._signals = 0
        self._stopping_since: float | None = None

    def argv_for(self, slot: int) -> list[str]:
        """The command line of child ``slot``."""
        return [sys.executable, "-P", "-m", "inferloop", *self._child_args, "--slot", str(slot)]

    def run(self) -> int:
        """Supervise until every child has exited after a stop, or on its own."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)
        for child in self._children:
            self._start(child)
        forwarded = 0
        while any(c.process is not None for c in self._children):
            if self._signals > forwarded:
                forwarded = self._forward()
            self._reap()
            time.sleep(0.1)
        codes = [c.history[-1] if c.history else 0 for c in self._children]
        log.info("supervisor: every child exited (codes %s)", codes)
        # A child still starting when the SIGTERM came had no handler yet: it did nothing.
        clean = (0, -signal.SIGTERM) if self._stopping_since is not None else (0,)
        return 0 if all(code in clean for code in codes) else 1

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1

    def _forward(self) -> int:
        sig = signal.SIGTERM if self._signals == 1 else signal.SIGKILL
        if self._stopping_since is None:
            self._stopping_since = time.monotonic()
        log.info("supervisor: sending %s to %d children", sig.name, len(self._children))
        for child in self._children:
            child.restart_at = None
            if child.process is not None and child.process.poll() is None:
                child.process.send_signal(sig)
        return self._signals

    def _reap(self) -> None:
        now = time.monotonic()
        stopping = self._stopping_since is not None
        if stopping and now - (self._stopping_since or now) > self._grace_s + 5:
            for child in self._children:
                if child.process is not None and child.process.poll() is None:
                    log.error("supervisor: child %d outlived the grace period; killing it",
                              child.slot)  # fmt: skip
                    child.process.kill()
        for child in self._children:
            if child.process is None:
                if child.restart_at is not None and now >= child.restart_at and not stopping:
                    self._start(child)
                continue
            code = child.process.poll()
            if code is None:
                continue
            child.history.append(code)
            child.process = None
            if stopping or code == 0:
                log.info("supervisor: child %d exited with %d", child.slot, code)
                continue
            if now - child.started_at > STABLE_AFTER_S:
                child.backoff.reset()
            pause_s = child.backoff.next()
            child.restart_at = now + pause_s
            log.error("supervisor: child %d crashed (exit %d); restarting in %.1f s",
                      child.slot, code, pause_s)  # fmt: skip

    def _start(self, child: Child) -> None:
        argv = self.argv_for(child.slot)
        child.process = subprocess.Popen(
            argv,
            env=os.environ.copy(),
        )
        child.started_at = time.monotonic()
        child.restart_at = None
        if child.history:
            child.restarts += 1
        log.info("supervisor: child %d started (pid %d)", child.slot, child.process.pid)
