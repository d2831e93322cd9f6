"""How long the machine itself stopped during a load: a probe in the manner of jHiccup.

The probe is a process of its own that sleeps 2 ms again and again and notes how much
longer each sleep took. It does nothing else, so it waits for nothing but a core: when
it oversleeps by 50 ms, any process on the machine could have stopped as long. Run as
root it raises itself to nice -20, where the kernel runs it almost as soon as its timer
fires, and what remains are mostly stops of the machine itself (on the development
machine, a nested virtual machine: stops of 20-90 ms about three times a minute under
load, half of them seen by a second probe at the same moment; one in a minute idle).
Without the right to raise itself it stays at its niceness and also counts its waits
for a core.

``python -m bench.stalls OUT`` runs the probe until SIGTERM (or until its parent
is gone), then writes what it saw to ``OUT`` (JSON); :class:`StallProbe` starts and
stops it around a load.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PERIOD_S = 0.002
# Oversleeps from this long are kept, with when they ended.
KEEP_MS = 5.0
# The report counts the stops that matter against a 50 ms latency target.
COUNT_FROM_MS = 20.0
HIGHEST_PRIORITY = -20


def probe(out: Path, period_s: float = PERIOD_S) -> None:
    """Sleep ``period_s`` at a time until SIGTERM; write the oversleeps to ``out``."""
    stop = {"requested": False}

    def request_stop(signum: int, frame: Any) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGTERM, request_stop)
    # An unprivileged user cannot go below its niceness: the result says where it ran.
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, 0, HIGHEST_PRIORITY)
    stalls: list[tuple[float, float]] = []
    started = time.monotonic()
    sleeps = 0
    parent = os.getppid()
    # A harness that died without stopping it leaves the probe an orphan: it ends too.
    while not stop["requested"] and os.getppid() == parent:
        before = time.monotonic()
        time.sleep(period_s)
        over_ms = (time.monotonic() - before - period_s) * 1000
        sleeps += 1
        if over_ms >= KEEP_MS:
            stalls.append((time.time(), over_ms))
    result = {
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "seconds": time.monotonic() - started,
        "sleeps": sleeps,
        "stalls": stalls,
    }
    out.write_text(json.dumps(result))


def summary(result: dict[str, Any] | None) -> dict[str, Any]:
    """The load's figures from a probe's ``result``: how many stops of at least
    ``COUNT_FROM_MS``, the longest, their sum, and the probe's niceness (all None
    without a result)."""
    if result is None:
        return {"stalls": None, "stall_max_ms": None, "stalled_ms": None, "stall_probe_nice": None}
    counted = [ms for _, ms in result["stalls"] if ms >= COUNT_FROM_MS]
    return {
        "stalls": len(counted),
        "stall_max_ms": max((ms for _, ms in result["stalls"]), default=0.0),
        "stalled_ms": sum(counted),
        "stall_probe_nice": result["nice"],
    }


@dataclass
class StallProbe:
    """The probe as a child process, from :meth:`start` to :meth:`stop`."""

    process: subprocess.Popen[bytes]
    out: Path

    @classmethod
    def start(cls, out: Path) -> StallProbe:
        """Start a probe that writes to ``out`` when stopped."""
        out.parent.mkdir(parents=True, exist_ok=True)
        out.unlink(missing_ok=True)
        process = subprocess.Popen([sys.executable, "-m", "bench.stalls", str(out)])
        return cls(process, out)

    def stop(self, timeout_s: float = 10.0) -> dict[str, Any]:
        """Stop the probe; :func:`summary` of what it saw (Nones if it had died)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.returncode != 0 or not self.out.exists():
            return summary(None)
        return summary(json.loads(self.out.read_text()))

    def close(self) -> None:
        """Kill the probe if it still runs (a load that failed)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


if __name__ == "__main__":
    probe(Path(sys.argv[1]))
