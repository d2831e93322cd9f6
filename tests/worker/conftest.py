"""Fixtures of the worker's tests: fast worker settings, a real registry with signing
keys, real fitted pipelines, the domain's topics, and workers run in a thread or as
real ``inferloop worker run`` processes (stopped at the end)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from inferloop.kafka_internals import KafkaInternals
from inferloop.registry import ModelVersion, Registry
from inferloop.registry.signing import KeyPair, generate_key_pair
from inferloop.settings import Domain, Settings
from inferloop.topics import DomainTopics, create_domain_topics, for_settings
from inferloop.worker.loop import RunLimits, RunSummary, Worker
from tests.helpers import settings_env
from tests.worker.factories import Fitted, train, tx_event

DOMAIN: Domain = "transactions"

# The worker's shortcuts into kafka-python's internals for this run ("none": every one
# off), for every worker test that does not choose for itself; read by the kafka_shortcuts
# fixture of tests/conftest.py (there, so the folders that import wsettings find it too).
SHORTCUTS_ENV = "TEST_KAFKA_SHORTCUTS"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # The delivery, rebalance and swap tests marked ``shortcuts_off_too`` run twice in the
    # same session: with the shortcuts of the run and with every one off ("none").
    if metafunc.definition.get_closest_marker("shortcuts_off_too") is not None:
        metafunc.parametrize(
            "kafka_shortcuts", [None, "none"], ids=["shortcuts", "no-shortcuts"], indirect=True
        )


@pytest.fixture(scope="session")
def model_v1() -> Fitted:
    """A real fitted transactions pipeline."""
    return train(seed=1)


@pytest.fixture(scope="session")
def model_v2() -> Fitted:
    """Another one, whose scores differ from the first's."""
    return train(seed=2, iterations=35)


@pytest.fixture
def keys(tmp_path: Path) -> KeyPair:
    """The signing key pair of the test's "retrain job"."""
    return generate_key_pair(tmp_path / "keys", "retrain")


@pytest.fixture
def wsettings(settings: Settings, keys: KeyPair, kafka_shortcuts: str | None) -> Settings:
    """The test's settings with quick worker timings, and the registry's public key.

    Workers get no signing key (as in production); :func:`registry` adds it.
    """
    worker = settings.worker.model_copy(
        update={
            "instance_id": "pytest",
            "session_timeout_ms": 3000,
            "heartbeat_interval_ms": 500,
            "transaction_timeout_ms": 5000,
            "model_check_interval_s": 0.5,
            "redis_backoff_max_s": 1.0,
            "shutdown_grace_s": 15.0,
            "max_batch_size": 200,
            "metrics_port": 0,
        }
    )
    if kafka_shortcuts is not None:
        worker = type(worker).model_validate(
            worker.model_dump() | {"kafka_shortcuts": kafka_shortcuts}
        )
    registry = settings.registry.model_copy(update={"verify_key_paths": (keys.public_path,)})
    return settings.model_copy(update={"worker": worker, "registry": registry})


@pytest.fixture
def internals(wsettings: Settings) -> KafkaInternals:
    """The shortcuts into kafka-python's internals the test's settings ask for."""
    return KafkaInternals(wsettings.worker.kafka_shortcuts)


def with_worker(settings: Settings, **changes: Any) -> Settings:
    """``settings`` with some worker settings changed."""
    return settings.model_copy(update={"worker": settings.worker.model_copy(update=changes)})


@pytest.fixture
def topics(wsettings: Settings) -> DomainTopics:
    """The transactions domain's four topics, created."""
    create_domain_topics(wsettings, DOMAIN)
    return for_settings(wsettings, DOMAIN)


@pytest.fixture
def registry(wsettings: Settings, keys: KeyPair) -> Iterator[Registry]:
    """The real registry on the test's Redis prefix, signing with the test's key."""
    section = wsettings.registry.model_copy(update={"signing_key_path": keys.private_path})
    reg = Registry.from_settings(wsettings.model_copy(update={"registry": section}))
    yield reg
    reg.close()


Champion = Callable[[Fitted], ModelVersion]


@pytest.fixture
def champion(registry: Registry) -> Champion:
    """``champion(fitted)``: register ``fitted`` and make it the champion."""

    def make(fitted: Fitted) -> ModelVersion:
        version = registry.register(
            DOMAIN,
            fitted.pipeline,
            domain=DOMAIN,
            threshold=fitted.threshold,
            input_schema_version=1,
            golden_events=[tx_event(900_000 + i) for i in range(8)],
            params={"max_iter": fitted.pipeline.get_params().get("model__max_iter")},
            metrics={"tp": 1.0, "fp": 1.0, "n": 10.0},
            champion_metrics=None,
            lineage={"source": "pytest"},
            created_by="pytest",
        )
        registry.promote(
            DOMAIN,
            version.version,
            expected_current=registry.resolve(DOMAIN),
            reason="test",
        )
        return version

    return make


@dataclass
class WorkerThread:
    """A :class:`Worker` running in a thread of the test process."""

    worker: Worker
    thread: threading.Thread | None = None
    summary: RunSummary | None = None
    error: BaseException | None = None

    def start(self) -> WorkerThread:
        self.thread = threading.Thread(target=self._run, name="worker-under-test", daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            self.summary = self.worker.run()
        except BaseException as exc:  # handed to the test, which raises it in join()
            logging.getLogger(__name__).exception("the worker under test failed")
            self.error = exc

    def stop(self, timeout_s: float = 30.0) -> RunSummary:
        """Ask it to stop, wait, and return its summary (raising what it raised)."""
        self.worker.request_stop("test")
        return self.join(timeout_s)

    def _where(self) -> str:
        """The worker thread's stack now (what a hang waits on), and its summary so far."""
        frame = sys._current_frames().get(self.thread.ident or -1) if self.thread else None
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "(gone)"
        return f"{stack}consumed so far: {self.worker.summary.consumed}"

    def join(self, timeout_s: float = 60.0) -> RunSummary:
        """Wait until it ends on its own (bounded modes)."""
        assert self.thread is not None
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), f"the worker did not stop; it is at:\n{self._where()}"
        if self.error is not None:
            raise self.error
        assert self.summary is not None
        return self.summary


@pytest.fixture
def worker_thread() -> Iterator[Callable[..., WorkerThread]]:
    """``worker_thread(settings, **worker_kwargs)``: a started in-process worker."""
    started: list[WorkerThread] = []

    def start(settings: Settings, **kwargs: Any) -> WorkerThread:
        limits = kwargs.pop("limits", RunLimits())
        handle = WorkerThread(Worker(settings, DOMAIN, limits=limits, **kwargs)).start()
        started.append(handle)
        return handle

    yield start
    for handle in started:
        if handle.thread is not None and handle.thread.is_alive():
            handle.worker.request_stop("test teardown")
            handle.thread.join(30)


@dataclass
class WorkerProcess:
    """A real ``inferloop worker run`` process."""

    process: subprocess.Popen[bytes]
    log_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout_s: float = 60.0) -> int:
        return self.process.wait(timeout=timeout_s)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def worker_process(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """``worker_process(settings, *args)``: start ``inferloop worker run transactions``."""
    started: list[WorkerProcess] = []

    def start(settings: Settings, *args: str, env: dict[str, str] | None = None) -> WorkerProcess:
        n = len(started)
        log_path = tmp_path / f"worker-{n}.log"
        argv = [sys.executable, "-P", "-m", "inferloop", "--log-level", "INFO",
                "worker", "run", DOMAIN, *args]  # fmt: skip
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                argv, env=settings_env(settings) | (env or {}), stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
            )  # fmt: skip
        handle = WorkerProcess(process, log_path)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        if handle.process.poll() is None:
            with_cont = getattr(signal, "SIGCONT", None)
            if with_cont is not None:
                os.kill(handle.pid, with_cont)
            handle.process.kill()
            handle.process.wait(10)


def wait_for(condition: Callable[[], bool], timeout_s: float = 60.0, what: str = "") -> None:
    """Poll ``condition`` until it holds, or fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what or condition}")
