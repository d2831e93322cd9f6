"""An unreachable Redis: every API call and CLI command fails fast with one clear error
that names the address; a Redis that accepts but never answers does not hang anyone."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from inferloop.cli import cli
from inferloop.local.process import free_port
from inferloop.registry import AliasTarget, Registry, RegistryUnavailableError
from inferloop.settings import Settings
from tests.helpers import settings_env
from tests.registry.factories import Register, RegistryFactory, Trained


@pytest.fixture
def dead_port() -> int:
    """A port nothing listens on."""
    return free_port()


@pytest.fixture
def dead_settings(registry_settings: Settings, dead_port: int) -> Settings:
    """The test's settings pointing at the dead port."""
    url = f"redis://127.0.0.1:{dead_port}/0"
    redis_section = registry_settings.redis.model_copy(
        update={"url": url, "connect_timeout_s": 1.0}
    )
    return registry_settings.model_copy(update={"redis": redis_section})


@pytest.fixture
def export_file(registry: Registry, register: Register, tx_model: Trained, tmp_path: Path) -> Path:
    """A real export, made while Redis was up."""
    register(tx_model)
    path = tmp_path / "v1.tar"
    registry.export_version("transactions", 1, path)
    return path


Call = Callable[[Registry], Any]

_TARGET = AliasTarget(1, "0" * 64)
API_CALLS: dict[str, Call] = {
    "ping": lambda r: r.ping(),
    "resolve": lambda r: r.resolve("transactions"),
    "get_model": lambda r: r.get_model("transactions"),
    "list_models": lambda r: r.list_models(),
    "get_version": lambda r: r.get_version("transactions", 1),
    "list_versions": lambda r: r.list_versions("transactions"),
    "history": lambda r: r.history("transactions"),
    "get_report": lambda r: r.get_report("transactions", 1),
    "put_report": lambda r: r.put_report("transactions", 1, {"a.md": b"x"}),
    "load": lambda r: r.load("transactions", 1),
    "verify": lambda r: r.verify("transactions", 1),
    "verify_all": lambda r: r.verify_all(),
    "promote": lambda r: r.promote("transactions", 2, expected_current=_TARGET, reason="x"),
    "set_alias": lambda r: r.set_alias(
        "transactions", "challenger", 2, expected_current=None, reason="x"
    ),
    "remove_alias": lambda r: r.remove_alias(
        "transactions", "challenger", expected_current=2, reason="x"
    ),
    "rollback": lambda r: r.rollback("transactions", "x"),
    "reject": lambda r: r.reject("transactions", 1, "x"),
    "delete_version": lambda r: r.delete_version("transactions", 1, reason="x"),
    "apply_retention": lambda r: r.apply_retention("transactions"),
    "export_version": lambda r: r.export_version("transactions", 1, Path("/nonexistent/x.tar")),
    "watch": lambda r: r.watch("transactions"),
}


@pytest.mark.parametrize("call", list(API_CALLS))
def test_every_api_call_names_the_unreachable_address(
    call: str, registry_factory: RegistryFactory, dead_settings: Settings, dead_port: int
) -> None:
    registry = registry_factory(dead_settings)
    with pytest.raises(
        RegistryUnavailableError, match=f"Redis unreachable at 127.0.0.1:{dead_port}"
    ):
        API_CALLS[call](registry)


def test_register_and_import_fail_before_their_slow_work(
    *,
    registry_factory: RegistryFactory,
    dead_settings: Settings,
    dead_port: int,
    register: Register,
    tx_model: Trained,
    export_file: Path,
) -> None:
    registry = registry_factory(dead_settings)
    with pytest.raises(RegistryUnavailableError, match=f"127.0.0.1:{dead_port}"):
        register(tx_model, into=registry)
    with pytest.raises(RegistryUnavailableError, match=f"127.0.0.1:{dead_port}"):
        registry.import_version(export_file)


CLI_COMMANDS = [
    ["registry", "list"],
    ["registry", "list", "transactions"],
    ["registry", "show", "transactions:1"],
    ["registry", "show", "transactions@champion"],
    ["registry", "promote", "transactions", "1", "--reason", "x"],
    ["registry", "promote", "transactions", "1", "--reason", "x", "--expect", "none"],
    ["registry", "rollback", "transactions", "--reason", "x"],
    ["registry", "reject", "transactions", "1", "--reason", "x"],
    ["registry", "history", "transactions"],
    ["registry", "verify"],
    ["registry", "delete", "transactions:1", "--reason", "x"],
    ["registry", "prune", "transactions"],
    ["registry", "export", "transactions:1", "{tmp}/out.tar"],
    ["registry", "import", "{export}"],
    ["registry", "report", "transactions", "1", "--out", "{tmp}/report"],
]


@pytest.mark.parametrize("args", CLI_COMMANDS, ids=lambda a: " ".join(a[1:3]))
def test_every_cli_command_is_one_line_naming_the_address(
    args: list[str], dead_settings: Settings, dead_port: int, export_file: Path, tmp_path: Path
) -> None:
    filled = [a.format(tmp=tmp_path, export=export_file) for a in args]
    result = CliRunner(env=settings_env(dead_settings)).invoke(cli, filled)

    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [
        f"Error: Redis unreachable at 127.0.0.1:{dead_port}: "
        f"Error 111 connecting to 127.0.0.1:{dead_port}. Connection refused."
    ]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


def test_a_redis_that_never_answers_times_out_with_the_address(
    registry_factory: RegistryFactory, registry_settings: Settings, silent_server: int
) -> None:
    redis_section = registry_settings.redis.model_copy(
        update={"url": f"redis://127.0.0.1:{silent_server}/0", "socket_timeout_s": 0.5}
    )
    registry = registry_factory(registry_settings.model_copy(update={"redis": redis_section}))
    with pytest.raises(RegistryUnavailableError, match=f"127.0.0.1:{silent_server}"):
        registry.resolve("transactions")
