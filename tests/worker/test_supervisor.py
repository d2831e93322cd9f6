"""The supervisor's restart pauses: the package's backoff, started again after a child
that ran long enough (real processes that exit at once; no broker needed)."""

from __future__ import annotations

import subprocess
import sys
import time

from inferloop.worker.supervisor import STABLE_AFTER_S, Supervisor


def crashed() -> subprocess.Popen[bytes]:
    """A child process that has exited with a failure."""
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait()
    return process


def test_a_crashing_child_waits_longer_each_time_and_from_the_start_once_it_was_stable() -> None:
    supervisor = Supervisor(1, ["worker", "run", "transactions"], grace_s=1.0)
    child = supervisor._children[0]
    pauses: list[int] = []
    for ran_s in [0.0] * 7 + [STABLE_AFTER_S + 1, 0.0]:
        child.process = crashed()
        child.started_at = time.monotonic() - ran_s
        before = time.monotonic()
        supervisor._reap()
        assert child.restart_at is not None
        pauses.append(round(child.restart_at - before))
    # 1 s doubling to 30 s; a child that ran a minute crashed anew: 1 s again.
    assert pauses == [1, 2, 4, 8, 16, 30, 30, 1, 2]
    assert child.history == [3] * 9
