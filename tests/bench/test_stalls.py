"""The stall probe: a process that only sleeps, and what it says about the machine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.stalls import StallProbe, summary


def test_a_probe_frozen_for_300_ms_reports_a_stall_that_long(tmp_path: Path) -> None:
    probe = StallProbe.start(tmp_path / "probe.json")
    try:
        time.sleep(1.0)  # Python's start and the probe's signal handler
        os.kill(probe.process.pid, signal.SIGSTOP)
        time.sleep(0.3)
        os.kill(probe.process.pid, signal.SIGCONT)
        time.sleep(0.2)
        figures = probe.stop()
    finally:
        probe.close()

    assert figures["stalls"] >= 1
    assert 250 <= figures["stall_max_ms"] < 2_000
    assert figures["stalled_ms"] >= figures["stall_max_ms"]
    # As root the probe raises itself to the highest priority; otherwise it keeps its own.
    expected = -20 if os.geteuid() == 0 else os.getpriority(os.PRIO_PROCESS, 0)
    assert figures["stall_probe_nice"] == expected


def test_a_probe_that_died_gives_no_figures(tmp_path: Path) -> None:
    probe = StallProbe.start(tmp_path / "probe.json")
    probe.process.kill()
    probe.process.wait()

    assert probe.stop() == {
        "stalls": None,
        "stall_max_ms": None,
        "stalled_ms": None,
        "stall_probe_nice": None,
    }


def test_a_probe_whose_harness_died_ends_and_writes_what_it_saw(tmp_path: Path) -> None:
    out = tmp_path / "orphan.json"
    # A harness that starts a probe and exits without stopping it.
    harness = (
        "import subprocess, sys, time; "
        f"subprocess.Popen([sys.executable, '-m', 'bench.stalls', {str(out)!r}]); "
        "time.sleep(1.0)"
    )
    subprocess.run([sys.executable, "-c", harness], check=True, timeout=30)

    deadline = time.monotonic() + 10
    while not (out.exists() and out.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)  # the one write in progress
    # It slept about a second's worth of 2 ms sleeps before it saw its harness gone.
    assert json.loads(out.read_text())["sleeps"] > 100


def test_only_stalls_from_20_ms_are_counted_and_summed_but_the_longest_is_any() -> None:
    result = {"nice": 0, "seconds": 30.0, "sleeps": 14_000}
    kept = [(1.0, 6.0), (2.0, 25.0), (3.0, 80.0), (4.0, 19.9)]

    assert summary(result | {"stalls": kept}) == {
        "stalls": 2,
        "stall_max_ms": 80.0,
        "stalled_ms": 105.0,
        "stall_probe_nice": 0,
    }
    assert summary(result | {"stalls": []})["stall_max_ms"] == 0.0
