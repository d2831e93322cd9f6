"""The services a run talks to, the settings of each measurement, and child processes.

A run starts its own Kafka and Redis on free ports in a temporary folder (never the
user's services) unless ``--bootstrap`` and ``--redis-url`` name others. Every
measurement gets its own topic prefix (so its own topics and consumer groups); each
domain keeps one Redis key prefix, so its champion stays registered across the run.

Measured code runs in child processes (``python -m bench.child``): each starts
from a fresh interpreter, the harness's own threads never share its GIL, and its
resident memory can be read from ``/proc``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from prometheus_client.parser import text_string_to_metric_families

from inferloop.connections import admin_client
from inferloop.local.kafka import KafkaJars, LocalKafka
from inferloop.local.process import free_port
from inferloop.local.redis import LocalRedis
from inferloop.local.services import LocalServices
from inferloop.registry.signing import KeyPair, generate_key_pair
from inferloop.settings import (
    KafkaSettings,
    LocalServicesSettings,
    RedisSettings,
    RegistrySettings,
    Settings,
    TopicSettings,
    WorkerSettings,
)

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Env:
    """Where the services are, the run's signing keys and its working folders."""

    bootstrap: str
    redis_url: str
    home: Path
    out: Path
    keys: KeyPair
    services: LocalServices | None = None
    children: list[Child] = field(default_factory=list)

    def settings(self, tag: str, key_prefix: str, **worker: Any) -> Settings:
        """Settings of one measurement: topic prefix from ``tag``, Redis key prefix
        ``key_prefix``, the run's verify key, worker settings changed by ``worker``."""
        return Settings(
            kafka=KafkaSettings(bootstrap_servers=self.bootstrap),
            redis=RedisSettings(url=self.redis_url, key_prefix=key_prefix),
            topics=TopicSettings(prefix=f"{tag}-", partitions=4),
            registry=RegistrySettings(verify_key_paths=(self.keys.public_path,)),
            worker=WorkerSettings(instance_id="bench", metrics_port=0, **worker),
            data_dir=Settings().data_dir,
        )

    def signing(self, settings: Settings) -> Settings:
        """``settings`` with the run's private key: what registers and signs versions."""
        section = settings.registry.model_copy(update={"signing_key_path": self.keys.private_path})
        return settings.model_copy(update={"registry": section})

    def versions(self) -> dict[str, str | None]:
        """The versions of the services, as far as they can be known."""
        if self.services is None:
            return {
                "kafka": None,
                "redis": _redis_version(self.redis_url),
                "kafka_address": self.bootstrap,
            }
        return {
            "kafka": self.services.kafka.version(),
            "redis": self.services.redis.version(),
            "kafka_address": self.bootstrap,
        }

    def spawn(self, kind: str, spec: dict[str, Any], name: str) -> Child:
        """Start ``python -m bench.child kind`` with ``spec``; logs in the run's folder."""
        child = Child.start(kind, spec, self.home / "children", self.out / "logs", name)
        self.children.append(child)
        return child

    def stop_children(self) -> None:
        """Kill every child still running (after an error)."""
        for child in self.children:
            child.kill()


# One stop-the-world pause in the broker's GC log (-Xlog:gc with the time decorator).
_GC_PAUSE = re.compile(r"^\[([^\]]+)\]\[[^\]]*\] GC\(\d+\) Pause .* ([\d.]+)ms$")


def broker_gc_pauses_ms(env: Env, since_wall: float, until_wall: float) -> list[float] | None:
    """The run's own broker's GC pauses that ended between the two wall times, in ms;
    None for a broker the run did not start (its log is not ours to read)."""
    if env.services is None:
        return None
    path = env.services.kafka.gc_log_path
    if not path.exists():
        return []
    pauses = []
    for line in path.read_text(errors="replace").splitlines():
        found = _GC_PAUSE.match(line)
        if found is None:
            continue
        at = datetime.strptime(found[1], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
        if since_wall <= at <= until_wall:
            pauses.append(float(found[2]))
    return pauses


def broker_cpu_s(env: Env) -> dict[str, float] | None:
    """CPU seconds the run's own broker has used so far: in all, and in the JVM's JIT
    compiler threads (a fresh broker spends much of its first minute of load compiling);
    None for a broker the run did not start, or one that is not running."""
    pid = env.services.kafka.process.pid() if env.services is not None else None
    if pid is None:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    jit = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if "CompilerThre" in (task / "comm").read_text():
                jit += _cpu_ticks(task / "stat")
        except OSError:
            continue  # the thread ended meanwhile
    total = process_cpu_s(pid)
    return None if total is None else {"total": total, "jit": jit / tick}


def machine_cpu_ticks() -> dict[str, int]:
    """The machine's CPU time so far, in clock ticks summed over its cores: busy (user,
    nice, system and interrupts), and stolen from it by the hypervisor."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return {"busy": user + nice + system + irq + softirq, "steal": steal}


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds process ``pid`` has used so far, all its threads; None once it is gone."""
    try:
        return _cpu_ticks(Path(f"/proc/{pid}/stat")) / os.sysconf("SC_CLK_TCK")
    except (FileNotFoundError, ProcessLookupError):
        return None


@dataclass
class CpuWatch:
    """How many cores the machine kept busy, and named processes used, on average from
    :meth:`start` to :meth:`cores`: on two cores, the measured process, the broker and
    the harness share them, and a load that keeps both busy queues everyone's work."""

    pids: dict[str, int]
    started: float
    machine: dict[str, int]
    processes: dict[str, float | None]

    @classmethod
    def start(cls, pids: dict[str, int]) -> CpuWatch:
        """Note the CPU used so far by the machine and by each of ``{name: pid}``."""
        return cls(
            pids,
            time.monotonic(),
            machine_cpu_ticks(),
            {name: process_cpu_s(pid) for name, pid in pids.items()},
        )

    def cores(self) -> dict[str, float | None]:
        """``machine_busy_cores``, ``machine_steal_cores`` and ``<name>_cores`` since
        :meth:`start` (None for a process that ended meanwhile)."""
        seconds = max(time.monotonic() - self.started, 1e-9)
        tick = os.sysconf("SC_CLK_TCK")
        now = machine_cpu_ticks()
        figures: dict[str, float | None] = {
            f"machine_{k}_cores": (now[k] - self.machine[k]) / tick / seconds for k in now
        }
        for name, pid in self.pids.items():
            before, after = self.processes[name], process_cpu_s(pid)
            figures[f"{name}_cores"] = (
                None if before is None or after is None else (after - before) / seconds
            )
        return figures


def _cpu_ticks(stat: Path) -> int:
    # After the command's closing parenthesis, utime and stime are the 12th and 13th fields.
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _redis_version(url: str) -> str | None:
    try:
        with redis.Redis.from_url(url, socket_timeout=2) as client:
            return str(client.info("server").get("redis_version"))
    except redis.RedisError:
        return None


def new_tag(kind: str) -> str:
    """A unique topic prefix for one measurement."""
    return f"b{kind}-{uuid.uuid4().hex[:6]}"


@contextlib.contextmanager
def environment(
    home: Path, out: Path, bootstrap: str | None = None, redis_url: str | None = None
) -> Iterator[Env]:
    """The run's services: the given ones, or Kafka and Redis started here on free ports
    (stopped at the end, data deleted with ``home``)."""
    keys = generate_key_pair(home / "keys", "bench")
    if bootstrap is not None:
        if redis_url is None:
            raise SystemExit("--bootstrap needs --redis-url too")
        env = Env(bootstrap, redis_url, home, out, keys)
        try:
            yield env
        finally:
            env.stop_children()
        return
    defaults = LocalServicesSettings()
    local = LocalServices(
        kafka=LocalKafka(
            jars=KafkaJars(defaults.kafka_version, defaults.cache_dir),
            home=home / "kafka",
            port=free_port(),
            controller_port=free_port(),
            heap="1g",
        ),
        redis=LocalRedis(home=home / "redis", port=free_port()),
        start_timeout_s=120.0,
    )
    try:
        states = local.up()
        log.info("services: %s", ", ".join(f"{s.name} {s.version} at {s.address}" for s in states))
        env = Env(local.kafka.address, local.redis.url, home, out, keys, services=local)
        try:
            yield env
        finally:
            env.stop_children()
    finally:
        local.down()


def create_topic(
    settings: Settings, topic: str, partitions: int = 4, config: dict[str, str] | None = None
) -> None:
    """Create ``topic`` and wait until it is there."""
    with admin_client(settings.kafka) as admin:
        admin.create_topics(
            {
                topic: {
                    "num_partitions": partitions,
                    "replication_factor": 1,
                    "configs": config or {},
                }
            }
        )
        admin.wait_for_topics([topic], timeout_ms=30_000)


# -- child processes -----------------------------------------------------------------
@dataclass
class Child:
    """A measurement running in its own interpreter; its result is JSON in a file."""

    kind: str
    name: str
    process: subprocess.Popen[bytes]
    result_path: Path
    log_path: Path

    @classmethod
    def start(cls, kind: str, spec: dict[str, Any], work: Path, logs: Path, name: str) -> Child:
        """Write the spec, start the child, return at once."""
        work.mkdir(parents=True, exist_ok=True)
        logs.mkdir(parents=True, exist_ok=True)
        stem = f"{name}-{uuid.uuid4().hex[:4]}"
        spec_path, result_path = work / f"{stem}.spec.json", work / f"{stem}.result.json"
        spec_path.write_text(json.dumps(spec | {"result_path": str(result_path)}, default=str))
        log_path = logs / f"{stem}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFERLOOP_")}
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "bench.child", kind, str(spec_path)],
                cwd=ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        return cls(kind, name, process, result_path, log_path)

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.process.pid

    def alive(self) -> bool:
        """Whether it still runs."""
        return self.process.poll() is None

    def wait(self, timeout_s: float) -> dict[str, Any]:
        """Wait for the child and return its result; a clear error when it failed."""
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ChildFailedError(
                f"{self.name} still running after {timeout_s:.0f} s; killed (log: {self.log_path})"
            ) from None
        if code != 0 or not self.result_path.exists():
            tail = self.log_path.read_text(errors="replace").splitlines()[-15:]
            raise ChildFailedError(
                f"{self.name} exited with {code} (log: {self.log_path}):\n" + "\n".join(tail)
            )
        result: dict[str, Any] = json.loads(self.result_path.read_text())
        return result

    def terminate(self) -> None:
        """Ask it to finish (SIGTERM)."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """End it now (SIGKILL)."""
        if self.alive():
            self.process.kill()
            self.process.wait(10)


class ChildFailedError(RuntimeError):
    """A measurement's child process failed or hung."""


# -- probes ------------------------------------------------------------------------
def proc_status_kb(pid: int, field_name: str) -> int | None:
    """A ``/proc/<pid>/status`` figure in KiB (``VmRSS`` now, ``VmHWM`` the peak)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def http_get(port: int, path: str, timeout_s: float = 2.0) -> tuple[int, bytes] | None:
    """(status, body) of ``GET http://127.0.0.1:<port><path>``; None if nothing answers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    except OSError:
        return None
    finally:
        connection.close()


def health(port: int) -> dict[str, Any] | None:
    """A worker's ``/health/ready`` answer (whatever its status), None if it does not answer."""
    answer = http_get(port, "/health/ready")
    if answer is None:
        return None
    body: dict[str, Any] = json.loads(answer[1])
    return body


def metric(port: int, name: str, labels: dict[str, str] | None = None) -> float | None:
    """One sample of a worker's ``/metrics`` (None when absent or unreachable)."""
    answer = http_get(port, "/metrics")
    if answer is None:
        return None
    for family in text_string_to_metric_families(answer[1].decode()):
        for sample in family.samples:
            if sample.name == name and all(
                sample.labels.get(k) == v for k, v in (labels or {}).items()
            ):
                return float(sample.value)
    return None


def wait_until(condition: Any, timeout_s: float, what: str, poll_s: float = 0.05) -> float:
    """Poll ``condition()`` until true; the seconds it took. TimeoutError naming ``what``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)
    return time.monotonic() - started


def start_run(log_level: str, out: str, kafka_log_level: int, suffix: str = "") -> Path:
    """Log to stderr at ``log_level`` (kafka-python at ``kafka_log_level``); the run's new
    results folder ``<out>/<UTC timestamp><suffix>``."""
    logging.basicConfig(
        level=log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kafka").setLevel(kafka_log_level)
    folder = Path(out) / (datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + suffix)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
