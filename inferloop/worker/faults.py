"""Test hooks that fire a fault at a named point of the loop.

The ``worker.fault`` setting (``INFERLOOP_WORKER__FAULT``) is ``point:action`` or
``point:action:n``: at the n-th time (default 1st) the loop reaches ``point``, it
does ``action``. Points are the places where a crash hurts most:

- ``before_commit``: the batch's predictions and dead letters are written (and, in
  exactly-once mode, its offsets added to the open transaction), the commit is not;
- ``scoring``: inside the scoring of a batch;
- ``after_commit``: the batch is committed.

Actions: ``kill`` (SIGKILL to itself: ``kill -9`` at exactly that point), ``stop``
(SIGSTOP to itself: a frozen zombie until a SIGCONT), ``raise`` (a
:class:`FaultInjectedError`). Never set in production.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass

from inferloop.worker.errors import FaultInjectedError, WorkerConfigError

log = logging.getLogger(__name__)

POINTS = ("before_commit", "scoring", "after_commit")
ACTIONS = ("kill", "stop", "raise")


@dataclass
class FaultHook:
    """A fault armed for one point; ``fire(point)`` is called as the loop passes it."""

    point: str
    action: str
    at: int = 1
    seen: int = 0

    @classmethod
    def parse(cls, spec: str | None) -> FaultHook | None:
        """The hook described by ``spec``, None when no fault is set."""
        if not spec:
            return None
        parts = spec.split(":")
        if len(parts) not in (2, 3) or parts[0] not in POINTS or parts[1] not in ACTIONS:
            raise WorkerConfigError(
                f"fault {spec!r} is not point:action[:n] with point in {POINTS} "
                f"and action in {ACTIONS}"
            )
        at = int(parts[2]) if len(parts) == 3 and parts[2].isdigit() else 1
        if len(parts) == 3 and not parts[2].isdigit():
            raise WorkerConfigError(f"fault {spec!r}: n must be a positive integer")
        return cls(point=parts[0], action=parts[1], at=max(at, 1))

    def fire(self, point: str) -> None:
        """Do the armed action if this is the armed point's n-th pass."""
        if point != self.point:
            return
        self.seen += 1
        if self.seen != self.at:
            return
        log.warning("fault hook: %s at %s (pass %d)", self.action, point, self.seen)
        if self.action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif self.action == "stop":
            os.kill(os.getpid(), signal.SIGSTOP)
        else:
            raise FaultInjectedError(f"fault injected at {point}")
