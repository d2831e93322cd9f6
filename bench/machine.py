"""What the figures were measured on: cores, memory, library versions, machine load.

Every section of a run records the load average at its start and end, because this
machine is shared: a figure taken while other jobs ran is only comparable as a ratio
against a baseline of the same section.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from inferloop.kafka_internals import crc32c_in_use

log = logging.getLogger(__name__)

PACKAGES = (
    "kafka-python",
    "crc32c",
    "scikit-learn",
    "numpy",
    "pydantic",
    "redis",
    "quixstreams",
    "confluent-kafka",
    "pyinstrument",
)


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages."""
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def machine_facts(services: dict[str, str | None]) -> dict[str, Any]:
    """Cores, memory, Python and library versions, and the services' versions."""
    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": {p: _version(p) for p in PACKAGES},
        "crc32c_in_use": crc32c_in_use(),
        "services": services,
    }


@dataclass
class Section:
    """One section's wall time and the machine's load at its start and end."""

    name: str
    started: float = 0.0
    load_start: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_end: tuple[float, float, float] = (0.0, 0.0, 0.0)
    seconds: float = 0.0

    def __enter__(self) -> Section:
        self.started = time.monotonic()
        self.load_start = load_average()
        log.info("section %s start: load average %s", self.name, self.load_start)
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = round(time.monotonic() - self.started, 1)
        self.load_end = load_average()
        log.info(
            "section %s finish in %.0f s: load average %s", self.name, self.seconds, self.load_end
        )

    def as_dict(self) -> dict[str, Any]:
        """For the JSON results."""
        return {"seconds": self.seconds, "load_start": self.load_start, "load_end": self.load_end}


def wait_for_quiet(max_load: float, timeout_s: float, poll_s: float = 15.0) -> bool:
    """Wait until the 1-minute load average is below ``max_load``; False on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        one = load_average()[0]
        if one < max_load:
            return True
        if time.monotonic() >= deadline:
            log.warning("load average still %.2f after %.0f s; measuring anyway", one, timeout_s)
            return False
        log.info("load average %.2f >= %.2f: waiting for a quieter machine", one, max_load)
        time.sleep(poll_s)
