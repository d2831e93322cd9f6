"""The CLI says what is wrong in one line, never with a traceback."""

from __future__ import annotations

from click.testing import CliRunner

from inferloop.cli import cli
from inferloop.local.process import free_port


def test_wrong_argument_names_the_choices() -> None:
    result = CliRunner().invoke(cli, ["topics", "create", "sms"])
    assert result.exit_code == 2
    assert "'sms' is not one of 'emails', 'transactions'" in result.output


def test_unreachable_kafka_is_one_line_naming_the_address() -> None:
    port = free_port()
    env = {
        "INFERLOOP_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "INFERLOOP_KAFKA__CONNECT_TIMEOUT_S": "1",
    }
    result = CliRunner(env=env).invoke(cli, ["topics", "create", "emails"])
    assert result.exit_code == 1
    assert f"Kafka unreachable at 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output


def test_bad_setting_in_environment_is_named() -> None:
    result = CliRunner(env={"INFERLOOP_TOPICS__PARTITIONS": "zero"}).invoke(
        cli, ["topics", "create", "emails"]
    )
    assert result.exit_code == 1
    assert "INFERLOOP_TOPICS__PARTITIONS" in result.output


def test_a_misspelt_variable_stops_the_command_naming_the_valid_one() -> None:
    # `services up` used to take the default ports and call the defaults "already
    # running"; now no command runs on a misread environment.
    result = CliRunner(env={"INFERLOOP_LOCAL__KAFKA_PORT": "29092"}).invoke(
        cli, ["services", "status"]
    )
    assert result.exit_code == 1
    assert "INFERLOOP_LOCAL__KAFKA_PORT is not a setting" in result.output
    assert "did you mean INFERLOOP_SERVICES__KAFKA_PORT?" in result.output
    assert "Traceback" not in result.output
