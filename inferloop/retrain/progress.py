"""Progress of the long steps (reading the log, fitting): a bar for people, lines for logs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Progress as Bar

log = logging.getLogger(__name__)


class Progress:
    """Receives the steps of a run; this base class ignores them."""

    def begin(self, domain: str, step: str, total: int | None) -> None:
        """A step starts; ``total`` units are due (None: unknown)."""

    def advance(self, units: int) -> None:
        """``units`` more are done."""

    def end(self) -> None:
        """The step is over."""

    @contextmanager
    def step(self, domain: str, step: str, total: int | None = None) -> Iterator[Progress]:
        """``begin`` ... ``end`` around a block."""
        self.begin(domain, step, total)
        try:
            yield self
        finally:
            self.end()


class LogProgress(Progress):
    """A log line at most every ``every_s`` seconds while a step runs (for services)."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._lock = threading.Lock()
        self._state: tuple[str, str, int | None, float] | None = None
        self._done = 0
        self._last = 0.0

    def begin(self, domain: str, step: str, total: int | None) -> None:
        """Remember the step and when it started."""
        now = time.monotonic()
        with self._lock:
            self._state = (domain, step, total, now)
            self._done, self._last = 0, now

    def advance(self, units: int) -> None:
        """Count units; log how far the step is when enough time has passed."""
        with self._lock:
            self._done += units
            if self._state is None or time.monotonic() - self._last < self.every_s:
                return
            self._last = time.monotonic()
            domain, step, total, started = self._state
            done = self._done
        of = f"/{total}" if total else ""
        log.info(
            "retrain %s %s: %d%s after %.0fs", domain, step, done, of, time.monotonic() - started
        )

    def end(self) -> None:
        """Forget the step."""
        with self._lock:
            self._state = None


class RichProgress(Progress):
    """A rich progress bar (a spinner when the total is unknown) on stderr."""

    def __init__(self) -> None:
        self._bar = Bar(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task: Any = None

    def begin(self, domain: str, step: str, total: int | None) -> None:
        """Show a bar for the step."""
        if self._task is None:
            self._bar.start()
        else:
            self._bar.remove_task(self._task)
        self._task = self._bar.add_task(f"{domain}: {step}", total=total)

    def advance(self, units: int) -> None:
        """Move the bar."""
        if self._task is not None:
            self._bar.advance(self._task, units)

    def end(self) -> None:
        """Hide the bar."""
        if self._task is not None:
            self._bar.remove_task(self._task)
            self._task = None
            self._bar.stop()
