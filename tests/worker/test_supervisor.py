"""The supervisor's restart pauses: the package's backoff, started again after a child
that ran long enough (real processes that exit at once; no broker needed)."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time

import pytest

from inferloop.worker.supervisor import STABLE_AFTER_S, Supervisor

RESTARTING = re.compile(r"crashed \(exit 3\); restarting in ([0-9.]+) s")


def crashed() -> subprocess.Popen[bytes]:
    """A child process that has exited with a failure."""
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait()
    return process


def test_a_crashing_child_waits_longer_each_time_and_from_the_start_once_it_was_stable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="inferloop.worker.supervisor")
    supervisor = Supervisor(1, ["worker", "run", "transactions"], grace_s=1.0)
    child = supervisor._children[0]  # the supervisor has no public handle on a child
    for ran_s in [0.0] * 7 + [STABLE_AFTER_S + 1, 0.0]:
        child.process = crashed()
        child.started_at = time.monotonic() - ran_s
        before = time.monotonic()
        supervisor._reap()
        after = time.monotonic()
        # The pause it logged, counted from the moment it reaped (however late that was).
        pause_s = float(RESTARTING.findall(caplog.text)[-1])
        assert child.restart_at is not None
        assert before + pause_s <= child.restart_at <= after + pause_s
    # 1 s doubling to 30 s; a child that ran a minute crashed anew: 1 s again.
    pauses = [float(p) for p in RESTARTING.findall(caplog.text)]
    assert pauses == [1, 2, 4, 8, 16, 30, 30, 1, 2]
    assert child.history == [3] * 9
