"""Fixtures of the monitor's tests: the worker's (a real registry, real fitted
pipelines, the domain's topics, in-process workers), monitor settings with quick
timings, labelled events, and monitors run in a thread or as real processes."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferloop.monitor.service import Monitor, RunSummary
from inferloop.settings import Settings
from tests.helpers import settings_env
from tests.worker.conftest import (  # noqa: F401  (fixtures, shared with the worker's tests)
    DOMAIN,
    champion,
    keys,
    model_v1,
    model_v2,
    registry,
    topics,
    worker_thread,
    wsettings,
)
from tests.worker.factories import publish, tx_event


@pytest.fixture
def msettings(wsettings: Settings) -> Settings:  # noqa: F811  (the imported fixture)
    """The worker's test settings with a quick monitor: every id in the served sample."""
    monitor = wsettings.monitor.model_copy(
        update={
            "model_check_interval_s": 0.5,
            "evaluate_interval_s": 0.5,
            "lease_s": 3.0,
            "metrics_port": 0,
            "served_sample_fraction": 1.0,
            "bootstrap_rounds": 20,
            "poll_timeout_ms": 100,
        }
    )
    return wsettings.model_copy(update={"monitor": monitor})


def with_monitor(settings: Settings, **changes: Any) -> Settings:
    """``settings`` with some monitor settings changed."""
    return settings.model_copy(update={"monitor": settings.monitor.model_copy(update=changes)})


def truth(i: int) -> str:
    """The label of ``tx_event(i)``: the rule the test pipelines were fitted on."""
    event = tx_event(i)
    return "fraud" if event["v1"] + 0.5 * event["v2"] > 1.2 else "legit"


def labelled_bytes(i: int, *, label: str | None = None) -> bytes:
    """A labelled transaction for ``tx_event(i)``, labelled now."""
    event = tx_event(i) | {
        "label": label or truth(i),
        "labelled_at": datetime.now(UTC).isoformat(),
        "label_source": "chargeback",
    }
    return json.dumps(event).encode()


def publish_labels(settings: Settings, topic: str, ids: Sequence[int]) -> None:
    """A labelled example for each ``tx_event(i)``, keyed by its event id."""
    publish(settings, topic, (labelled_bytes(i) for i in ids), (f"tx-{i}".encode() for i in ids))


def positives(ids: Sequence[int]) -> int:
    """How many of ``ids`` are fraud by the rule."""
    return int(np.sum([truth(i) == "fraud" for i in ids]))


@dataclass
class MonitorThread:
    """A :class:`Monitor` running in a thread of the test process."""

    monitor: Monitor
    kwargs: dict[str, Any]
    thread: threading.Thread | None = None
    summary: RunSummary | None = None
    error: BaseException | None = None

    def start(self) -> MonitorThread:
        self.thread = threading.Thread(target=self._run, name="monitor-under-test", daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            self.summary = self.monitor.run(**self.kwargs)
        except BaseException as exc:  # handed to the test, which raises it in join()
            logging.getLogger(__name__).exception("the monitor under test failed")
            self.error = exc

    def join(self, timeout_s: float = 60.0) -> RunSummary:
        """Wait until it ends (bounded modes) and return its summary."""
        assert self.thread is not None
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the monitor did not stop"
        if self.error is not None:
            raise self.error
        assert self.summary is not None
        return self.summary

    def stop(self, timeout_s: float = 30.0) -> RunSummary:
        """Ask it to stop and wait."""
        self.monitor.request_stop("test")
        return self.join(timeout_s)


@pytest.fixture
def monitor_thread() -> Iterator[Callable[..., MonitorThread]]:
    """``monitor_thread(settings, **run_kwargs)``: a started in-process monitor."""
    started: list[MonitorThread] = []

    def start(settings: Settings, **kwargs: Any) -> MonitorThread:
        handle = MonitorThread(Monitor(settings, DOMAIN), kwargs).start()
        started.append(handle)
        return handle

    yield start
    for handle in started:
        if handle.thread is not None and handle.thread.is_alive():
            handle.monitor.request_stop("test teardown")
            handle.thread.join(30)


@dataclass
class MonitorProcess:
    """A real ``inferloop monitor serve`` process and its log."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def monitor_process(tmp_path: Path) -> Iterator[Callable[..., MonitorProcess]]:
    """``monitor_process(settings, *args)``: ``inferloop monitor serve --domain
    transactions`` as a real process (killed at the end if still running)."""
    started: list[subprocess.Popen[bytes]] = []

    def start(settings: Settings, *args: str) -> MonitorProcess:
        log_path = tmp_path / f"monitor-{len(started)}.log"
        argv = [sys.executable, "-P", "-m", "inferloop", "--log-level", "INFO",
                "monitor", "serve", "--domain", DOMAIN, *args]  # fmt: skip
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                argv, env=settings_env(settings), stdout=log_file, stderr=subprocess.STDOUT,
                cwd=tmp_path,
            )  # fmt: skip
        started.append(process)
        return MonitorProcess(process, log_path)

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)
