"""Running ``inferloop score`` in this process with a test's settings, and reading what
it wrote."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from inferloop.cli import cli
from inferloop.settings import Settings
from tests.helpers import settings_env


def score(
    settings: Settings, *args: str, stdin: bytes | None = None, progress: bool = False
) -> Result:
    """``inferloop score ARGS`` with ``settings`` (a progress bar only if ``progress``)."""
    runner = CliRunner(env=settings_env(settings))
    shown = "--progress" if progress else "--no-progress"
    return runner.invoke(cli, ["score", *args, shown], input=stdin)


def ok(result: Result) -> str:
    """The output of a run that must have succeeded."""
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def lines(path: Path) -> list[bytes]:
    """The lines of a JSON Lines file, gzip by its name."""
    data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    return data.splitlines()


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The decoded lines of a JSON Lines file."""
    return [json.loads(line) for line in lines(path)]


def write_lines(path: Path, values: list[bytes]) -> None:
    """Write ``values`` one a line (gzip for a ``.gz`` name)."""
    data = b"\n".join(values) + b"\n"
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
