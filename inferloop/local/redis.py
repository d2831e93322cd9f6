"""A Redis server (Debian's ``redis-server``) with its own data directory on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from inferloop.local.process import LocalServiceError, ManagedProcess, port_in_use, tail

log = logging.getLogger(__name__)

INSTALL_HINT = "install it with `sudo apt-get install redis-server` (Debian/Ubuntu)"


def find_redis_server(*, install: bool) -> str:
    """The ``redis-server`` binary; installed with apt when missing and allowed (root)."""
    for candidate in (shutil.which("redis-server"), "/usr/bin/redis-server"):
        if candidate and Path(candidate).exists():
            return candidate
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        log.info("redis-server is missing; installing Debian's package")
        env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "redis-server"],
        ):
            result = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
            if result.returncode != 0:
                raise LocalServiceError(
                    f"`{' '.join(cmd)}` failed (exit {result.returncode}): "
                    f"{result.stderr.strip()[-1000:]}; {INSTALL_HINT}"
                )
        if Path("/usr/bin/redis-server").exists():
            return "/usr/bin/redis-server"
    raise LocalServiceError(f"redis-server not found on PATH: {INSTALL_HINT}")


def redis_conf(*, port: int, data_dir: Path, pid_file: Path) -> str:
    """Append-only, fsynced on every write (registry writes are rare and must survive a
    crash), never evicting keys, on loopback only."""
    return f"""\
bind 127.0.0.1
port {port}
protected-mode yes
daemonize no
dir {data_dir}
pidfile {pid_file}
appendonly yes
appendfsync always
appendfilename "appendonly.aof"
save ""
maxmemory-policy noeviction
loglevel notice
"""


@dataclass(frozen=True)
class LocalRedis:
    """One Redis server whose data, configuration, log and pid file live in ``home``."""

    home: Path
    port: int
    install: bool = True

    @property
    def data_dir(self) -> Path:
        """Where the append-only file lives."""
        return self.home / "data"

    @property
    def log_path(self) -> Path:
        """The server's log."""
        return self.home / "redis.log"

    @property
    def process(self) -> ManagedProcess:
        """The running server, as recorded by its pid file."""
        return ManagedProcess("redis", self.home / "redis.pid", f":{self.port}")

    @property
    def url(self) -> str:
        """A URL for clients."""
        return f"redis://127.0.0.1:{self.port}/0"

    def running(self) -> bool:
        """Whether this server is up."""
        return self.process.pid() is not None

    def version(self) -> str | None:
        """The version the running server reports."""
        try:
            with redis.Redis(port=self.port, socket_timeout=2) as client:
                info = client.info("server")
        except redis.RedisError:
            return None
        return str(info.get("redis_version"))

    def start(self, timeout_s: float) -> bool:
        """Start the server and wait until it answers; False if it was running already."""
        if self.running():
            return False
        if port_in_use(self.port):
            raise LocalServiceError(
                f"cannot start Redis: port {self.port} on 127.0.0.1 is taken by another program "
                "(choose another with INFERLOOP_SERVICES__REDIS_PORT)"
            )
        binary = find_redis_server(install=self.install)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.home / "redis.conf"
        # redis-server writes its own pid file; ours is written by spawn, at the same path.
        conf.write_text(
            redis_conf(port=self.port, data_dir=self.data_dir, pid_file=self.home / "redis.pid")
        )
        pid = self.process.spawn([binary, str(conf), "--port", str(self.port)], self.log_path)
        self._wait_ready(pid, timeout_s)
        return True

    def stop(self) -> bool:
        """Stop the server; False if it was not running."""
        return self.process.stop(timeout_s=30.0)

    def reset(self) -> None:
        """Delete the server's data (it must be stopped)."""
        if self.running():
            raise LocalServiceError("stop Redis before wiping its data")
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def _wait_ready(self, pid: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        try:
            while time.monotonic() < deadline:
                try:
                    # LOADING while the AOF is replayed is not ready yet.
                    if client.ping():
                        return
                except redis.RedisError:
                    pass
                if not self.running():
                    raise LocalServiceError(
                        f"Redis exited during start; its last log lines ({self.log_path}):\n"
                        f"{tail(self.log_path)}"
                    )
                time.sleep(0.05)
        finally:
            client.close()
        self.process.stop(timeout_s=5)
        raise LocalServiceError(
            f"Redis did not answer within {timeout_s:.0f} s (pid {pid}); its last log lines:\n"
            f"{tail(self.log_path)}"
        )
