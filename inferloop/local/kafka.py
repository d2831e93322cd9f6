"""A single-node Apache Kafka (KRaft, combined broker and controller) on 127.0.0.1.

The broker's jars are resolved from Maven Central once and cached outside the
repository, so later starts need no network.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from inferloop.local.process import LocalServiceError, ManagedProcess, port_in_use, tail

log = logging.getLogger(__name__)

STARTED_LINE = "Kafka Server started"
_VERSION_RE = re.compile(r"Kafka version: (\S+)")
# What Kafka's own start script (bin/kafka-run-class.sh, KAFKA_JVM_PERFORMANCE_OPTS) runs
# the broker with, as the apache/kafka image of docker-compose.yml does. Without
# MaxGCPauseMillis=20 G1 aims at 200 ms: young collections stopped the broker for up to
# 68 ms in a 6,000 msg/s test here, and for up to 27 ms with it in the same test (a goal,
# not a bound: 40-90 ms pauses still occur when the two cores are busy).
JVM_PERFORMANCE_OPTS = (
    "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15", "-Djava.awt.headless=true",
)  # fmt: skip
_COMPLETE_MARKER = ".complete"


def _require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise LocalServiceError(f"`{name}` not found on PATH: {hint}")
    return path


@dataclass(frozen=True)
class KafkaJars:
    """The broker's runtime jars for one Kafka version, cached under ``cache_dir``."""

    version: str
    cache_dir: Path

    @property
    def lib_dir(self) -> Path:
        """Folder holding the jars."""
        return self.cache_dir / f"kafka-{self.version}" / "lib"

    def present(self) -> bool:
        """Whether a complete set of jars is cached."""
        return (self.lib_dir / _COMPLETE_MARKER).exists()

    def ensure(self) -> Path:
        """Resolve the jars with Maven unless they are cached; return their folder."""
        if self.present():
            return self.lib_dir
        mvn = _require_tool("mvn", "install Maven 3.8+ (Debian: apt-get install maven)")
        _require_tool("java", "install a JDK 17+ (Debian: apt-get install openjdk-17-jdk-headless)")
        self.lib_dir.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=self.lib_dir.parent) as work:
            pom = Path(work) / "pom.xml"
            pom.write_bytes(resources.files("inferloop.local").joinpath("pom.xml").read_bytes())
            out = Path(work) / "lib"
            cmd = [
                mvn, "-B", "-q", "-f", str(pom),
                f"-Dkafka.version={self.version}",
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={out}",
            ]  # fmt: skip
            log.info("fetching Kafka %s jars from Maven Central", self.version)
            result = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if result.returncode != 0 or not any(out.glob("kafka_2.13-*.jar")):
                detail = (result.stdout + result.stderr).strip()[-2000:]
                raise LocalServiceError(
                    f"Maven could not fetch the Kafka {self.version} jars "
                    f"(exit {result.returncode}):\n{detail}"
                )
            (out / _COMPLETE_MARKER).write_text(f"{time.time()}\n")
            if self.lib_dir.exists():
                shutil.rmtree(self.lib_dir)
            out.rename(self.lib_dir)
        log.info("Kafka jars cached in %s (%.1f s)", self.lib_dir, time.monotonic() - started)
        return self.lib_dir


def server_properties(*, port: int, controller_port: int, data_dir: Path) -> str:
    """The broker's configuration: one node, replication factor 1, fast group joins."""
    return f"""\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data_dir}
num.partitions=4
# A typo in a topic name is an error, not a new empty topic.
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=500
transaction.abort.timed.out.transaction.cleanup.interval.ms=2000
transaction.remove.expired.transaction.cleanup.interval.ms=60000
"""


@dataclass(frozen=True)
class LocalKafka:
    """One broker whose data, configuration, log and pid file live in ``home``."""

    jars: KafkaJars
    home: Path
    port: int
    controller_port: int
    heap: str = "512m"

    @property
    def data_dir(self) -> Path:
        """The broker's log directory (the topics' data)."""
        return self.home / "data"

    @property
    def log_path(self) -> Path:
        """Where the broker's own output goes."""
        return self.home / "kafka.log"

    @property
    def gc_log_path(self) -> Path:
        """The JVM's garbage-collection log: one line per pause, with its duration."""
        return self.home / "gc.log"

    @property
    def process(self) -> ManagedProcess:
        """The running broker, as recorded by its pid file."""
        return ManagedProcess("kafka", self.home / "kafka.pid", f"{self.home}/server.properties")

    @property
    def address(self) -> str:
        """``host:port`` of the broker's client listener."""
        return f"127.0.0.1:{self.port}"

    def running(self) -> bool:
        """Whether this broker is up."""
        return self.process.pid() is not None

    def version(self) -> str | None:
        """The version the running broker logged at start."""
        found = _VERSION_RE.findall(tail(self.log_path, 400))
        return found[-1] if found else None

    def start(self, timeout_s: float) -> bool:
        """Start the broker and wait until it serves; False if it was running already."""
        if self.running():
            return False
        for port in (self.port, self.controller_port):
            if port_in_use(port):
                raise LocalServiceError(
                    f"cannot start Kafka: port {port} on 127.0.0.1 is taken by another program "
                    "(choose others with INFERLOOP_SERVICES__KAFKA_PORT and "
                    "INFERLOOP_SERVICES__KAFKA_CONTROLLER_PORT)"
                )
        java = _require_tool("java", "install a JDK 17+ (Debian: openjdk-17-jdk-headless)")
        lib = self.jars.ensure()
        config = self._write_config()
        self._format(java, lib, config)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log4j = self.home / "log4j2.yaml"
        argv = [
            java, f"-Xmx{self.heap}", f"-Xms{self.heap}", *JVM_PERFORMANCE_OPTS,
            f"-Xlog:gc:file={self.gc_log_path}:time,uptime:filecount=2,filesize=10M",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp", f"{lib}/*", "kafka.Kafka", str(config),
        ]  # fmt: skip
        pid = self.process.spawn(argv, self.log_path, cwd=self.home)
        self._wait_started(pid, offset, timeout_s)
        return True

    def stop(self) -> bool:
        """Stop the broker; False if it was not running."""
        return self.process.stop(timeout_s=30.0)

    def reset(self) -> None:
        """Delete the broker's data (it must be stopped)."""
        if self.running():
            raise LocalServiceError("stop Kafka before wiping its data")
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def _write_config(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        config = self.home / "server.properties"
        config.write_text(
            server_properties(
                port=self.port, controller_port=self.controller_port, data_dir=self.data_dir
            )
        )
        log4j = resources.files("inferloop.local").joinpath("log4j2.yaml").read_bytes()
        (self.home / "log4j2.yaml").write_bytes(log4j)
        return config

    def _format(self, java: str, lib: Path, config: Path) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        cmd = [
            java, "-cp", f"{lib}/*", "kafka.tools.StorageTool", "format",
            f"--cluster-id={cluster_id}", "-c", str(config),
        ]  # fmt: skip
        env = os.environ | {"KAFKA_HEAP_OPTS": "-Xmx256m"}
        result = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        if result.returncode != 0:
            raise LocalServiceError(
                f"formatting Kafka's storage in {self.data_dir} failed:\n"
                f"{(result.stdout + result.stderr).strip()[-2000:]}"
            )

    def _wait_started(self, pid: int, offset: int, timeout_s: float) -> None:
        # A TCP connect alone is not enough: the listener opens before the broker serves.
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.log_path.open("rb") as fh:
                fh.seek(offset)
                if STARTED_LINE.encode() in fh.read():
                    return
            if not self.running():
                raise LocalServiceError(
                    f"Kafka exited during start; its last log lines ({self.log_path}):\n"
                    f"{tail(self.log_path)}"
                )
            time.sleep(0.05)
        self.process.stop(timeout_s=5)
        raise LocalServiceError(
            f"Kafka did not start within {timeout_s:.0f} s (pid {pid}); its last log lines:\n"
            f"{tail(self.log_path)}"
        )
