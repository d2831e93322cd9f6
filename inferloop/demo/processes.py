"""The processes a demo starts (workers, the retrain service), each logging to a file."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class Child:
    """One ``inferloop`` sub-command running in its own process."""

    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        """Start it; its output goes to its log file."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-P", "-m", "inferloop", *self.argv],
                env=os.environ | env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        command = " ".join(self.argv)
        log.info("started %s (pid %d): inferloop %s", self.name, self.process.pid, command)

    def running(self) -> bool:
        """Whether it has not exited."""
        return self.process is not None and self.process.poll() is None

    def stop(self, grace_s: float) -> int | None:
        """SIGTERM, then SIGKILL after ``grace_s``; its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killing it", self.name, grace_s)
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@dataclass
class Children:
    """Every child of a demo run, stopped together in reverse order of start."""

    started: list[Child] = field(default_factory=list)

    def start(self, child: Child, env: dict[str, str]) -> Child:
        """Start ``child`` and remember it."""
        child.start(env)
        self.started.append(child)
        return child

    def crashed(self) -> list[Child]:
        """Children that exited while they should be running."""
        return [c for c in self.started if not c.running()]

    def stop(self, name: str, grace_s: float = 45.0) -> int | None:
        """Stop the running child called ``name`` on purpose (not a crash any more)."""
        child = next(c for c in self.started if c.name == name and c.running())
        self.started.remove(child)
        return child.stop(grace_s)

    def stop_all(self, grace_s: float = 45.0) -> dict[str, int | None]:
        """Stop every child; their exit codes by name."""
        return {child.name: child.stop(grace_s) for child in reversed(self.started)}
