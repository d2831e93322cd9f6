"""A server process that inferloop started and tracks with a pid file."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from inferloop.errors import InferloopError


class LocalServiceError(InferloopError): ...


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something already listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def free_port() -> int:
    """A port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file, or a note that it is empty."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:]) or f"(empty log at {path})"


@dataclass(frozen=True)
class ManagedProcess:
    """A daemon recorded by its pid file; ``marker`` must appear in its command line."""

    name: str
    pid_file: Path
    marker: str

    def pid(self) -> int | None:
        """The pid of the running process, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if not alive(pid):
            self.pid_file.unlink(missing_ok=True)
            return None
        cmdline = _cmdline(pid)
        if self.marker.encode() in cmdline or cmdline == b"":
            # Empty while a process is being exec'd: ours, just started.
            return pid
        # The pid was recycled by another program: the pid file is stale.
        self.pid_file.unlink(missing_ok=True)
        return None

    def spawn(self, argv: Sequence[str], log_path: Path, cwd: Path | None = None) -> int:
        """Start ``argv`` in its own session, logging to ``log_path``; return its pid."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        # Popen returns before the kernel has finished the exec: for some milliseconds the
        # new process's command line is empty, and it must not be taken for a stranger.
        deadline = time.monotonic() + 5.0
        while _cmdline(proc.pid) == b"" and alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.001)
        return proc.pid

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the process (TERM, then KILL after ``timeout_s``); False if none ran."""
        pid = self.pid()
        if pid is None:
            return False
        _signal(pid, signal.SIGTERM)
        if not wait_gone(pid, timeout_s):
            _signal(pid, signal.SIGKILL)
            wait_gone(pid, 10.0)
        self.pid_file.unlink(missing_ok=True)
        return True


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _reap(pid: int) -> None:
    # A child of this very process (started by ``spawn``) must be waited for, or it
    # lingers as a zombie that still looks alive.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The state letter follows the command name in parentheses.
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def wait_gone(pid: int, timeout_s: float) -> bool:
    """Wait until ``pid`` has exited; False if it is still alive after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)


def _cmdline(pid: int) -> bytes:
    """The command line of ``pid`` with spaces between arguments (empty if unreadable)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except (FileNotFoundError, ProcessLookupError):
        return b""
