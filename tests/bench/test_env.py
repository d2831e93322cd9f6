"""The harness's watch on its own broker (its GC log and its CPU) and on the machine's
CPU during a load."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from bench.env import CpuWatch, Env, broker_cpu_s, broker_gc_pauses_ms, process_cpu_s
from inferloop.local.kafka import KafkaJars, LocalKafka
from inferloop.local.redis import LocalRedis
from inferloop.local.services import LocalServices
from inferloop.registry.signing import KeyPair

GC_LOG = """\
[2026-12-04T03:50:50.120+0000][0.003s] Using G1
[2026-12-04T03:50:50.541+0000][0.425s] GC(0) Pause Young (Normal) (G1 Evacuation Pause) 26M->5M(512M) 9.812ms
[2026-12-04T03:50:52.000+0000][1.880s] GC(1) Pause Young (Concurrent Start) (G1 Evacuation Pause) 60M->9M(512M) 68.524ms
[2026-12-04T03:50:52.010+0000][1.890s] GC(2) Concurrent Mark Cycle
[2026-12-04T03:50:52.300+0000][2.180s] GC(2) Pause Remark 20M->20M(512M) 1.250ms
[2026-12-04T03:50:55.000+0000][4.880s] GC(3) Pause Young (Normal) (G1 Evacuation Pause) 80M->9M(512M) 3.000ms
"""  # noqa: E501 - the JVM's lines as it writes them


def _wall(clock: str) -> float:
    return datetime.fromisoformat(f"2026-12-04T{clock}+00:00").timestamp()


def _env(tmp_path: Path, *, own_broker: bool, services: LocalServices | None = None) -> Env:
    services = services or LocalServices(
        kafka=LocalKafka(KafkaJars("4.3.1", tmp_path), tmp_path / "kafka", 1, 2),
        redis=LocalRedis(home=tmp_path / "redis", port=3),
    )
    keys = KeyPair(tmp_path / "private.pem", tmp_path / "public.pem", "bench")
    return Env("127.0.0.1:1", "redis://127.0.0.1:3", tmp_path, tmp_path, keys,
               services=services if own_broker else None)  # fmt: skip


def test_the_pauses_that_ended_inside_the_window_with_their_durations(tmp_path: Path) -> None:
    env = _env(tmp_path, own_broker=True)
    assert env.services is not None
    env.services.kafka.gc_log_path.parent.mkdir(parents=True)
    env.services.kafka.gc_log_path.write_text(GC_LOG)

    assert broker_gc_pauses_ms(env, _wall("03:50:51"), _wall("03:50:54")) == [68.524, 1.25]
    assert broker_gc_pauses_ms(env, _wall("03:50:56"), _wall("03:51:00")) == []


def test_no_log_is_no_pause_and_a_foreign_broker_is_not_read(tmp_path: Path) -> None:
    assert broker_gc_pauses_ms(_env(tmp_path, own_broker=True), 0.0, 2e9) == []
    assert broker_gc_pauses_ms(_env(tmp_path, own_broker=False), 0.0, 2e9) is None


def test_the_cpu_of_a_running_broker_and_of_its_compiler_threads(
    tmp_path: Path, local_services: LocalServices
) -> None:
    env = _env(tmp_path, own_broker=True, services=local_services)
    first = broker_cpu_s(env)
    assert first is not None
    # A broker that has started has run Java code, and compiled some of it.
    assert 0 < first["jit"] < first["total"]
    later = broker_cpu_s(env)
    assert later is not None
    assert later["total"] >= first["total"]


def test_no_cpu_for_a_broker_that_is_not_running_or_not_ours(tmp_path: Path) -> None:
    assert broker_cpu_s(_env(tmp_path, own_broker=True)) is None
    assert broker_cpu_s(_env(tmp_path, own_broker=False)) is None


def test_the_cores_a_busy_and_an_idle_process_used_and_the_machine_with_them() -> None:
    spin = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end: pass"
    busy = subprocess.Popen([sys.executable, "-c", spin])
    idle = subprocess.Popen(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE,
    )
    try:
        # Half a CPU second, so one clock tick (10 ms) moves the figure by 2 %, not 9 %.
        # Its start-up (the interpreter's imports, ~0.05 CPU s) stays out of the window:
        # over a short window on a loaded machine it read as 0.1 core.
        assert idle.stdout is not None
        idle.stdout.readline()
        opened = time.monotonic()
        watch = CpuWatch.start({"busy": busy.pid, "idle": idle.pid})
        spun = busy_for(busy.pid, cpu_s=0.5, timeout_s=25.0)
        cores = watch.cores()
        window_s = time.monotonic() - opened
    finally:
        busy.kill()
        idle.kill()
        busy.wait()
        idle.wait()
    busy_cores, idle_cores = cores["busy_cores"], cores["idle_cores"]
    assert busy_cores is not None
    assert idle_cores is not None
    # On a loaded machine the spinning loop gets only its share of the two cores, so
    # the test waits for CPU time rather than wall time: the figure is at least that
    # CPU over the (longer) window, and one thread never uses more than one core.
    assert spun >= 0.5
    assert 0.5 / window_s <= busy_cores <= 1.05
    # A sleeping process uses almost nothing (a few ticks at most).
    assert idle_cores < 0.05
    assert idle_cores < busy_cores
    # The machine's busy time counts the busy process's, measured over the same window
    # (clock ticks of 10 ms: two of them of slack).
    machine = cores["machine_busy_cores"]
    assert machine is not None
    assert machine >= busy_cores - 0.02
    assert cores["machine_steal_cores"] is not None


def busy_for(pid: int, cpu_s: float, timeout_s: float) -> float:
    """Wait until process ``pid`` has used ``cpu_s`` more CPU seconds (or the timeout);
    the CPU seconds it used meanwhile."""
    first = process_cpu_s(pid)
    assert first is not None
    deadline = time.monotonic() + timeout_s
    used = 0.0
    while used < cpu_s and time.monotonic() < deadline:
        time.sleep(0.1)
        now = process_cpu_s(pid)
        assert now is not None
        used = now - first
    return used


def test_a_process_that_ended_during_the_watch_has_no_figure() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    watch = CpuWatch.start({"gone": gone.pid})
    gone.wait()
    assert watch.cores()["gone_cores"] is None
