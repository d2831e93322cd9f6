"""``inferloop retrain``: through a running service or in process, and who holds the lock."""

from __future__ import annotations

import json
import subprocess
import sys

import redis
from click.testing import CliRunner

from inferloop.cli import cli
from inferloop.keys import Keys
from inferloop.local.process import free_port
from inferloop.registry import Registry
from inferloop.retrain.lock import LeaseLock
from inferloop.settings import Settings
from tests.helpers import settings_env
from tests.retrain.conftest import serving, with_retrain
from tests.retrain.factories import emails, produce


def _invoke(settings: Settings, *args: str) -> tuple[int, str]:
    result = CliRunner(env=settings_env(settings)).invoke(cli, ["retrain", *args])
    return result.exit_code, result.output


def test_a_request_while_another_runs_names_the_holder_then_runs_in_process(
    retrain_settings: Settings, labels_topic: str, redis_client: redis.Redis
) -> None:
    produce(retrain_settings, labels_topic, emails(300))
    key = Keys(retrain_settings.redis.key_prefix).retrain_lock("emails")
    with LeaseLock(redis_client, key, 60).acquire("ops-host:77:cli:nightly"):
        code, output = _invoke(retrain_settings, "run", "emails")
    assert code == 1
    assert "held by ops-host:77:cli:nightly" in output
    assert "Traceback" not in output
    code, output = _invoke(retrain_settings, "run", "emails", "--json")
    assert code == 0, output
    outcome = json.loads(output)
    assert (outcome["outcome"], outcome["version"], outcome["trigger"]) == ("promoted", 1, "cli")


def test_a_request_goes_to_the_running_service_and_waits_for_its_outcome(
    retrain_settings: Settings, labels_topic: str, registry: Registry
) -> None:
    produce(retrain_settings, labels_topic, emails(300))
    with serving(retrain_settings, registry):
        code, output = _invoke(retrain_settings, "run", "emails", "--wait", "--timeout-s", "60")
        status_code, status = _invoke(retrain_settings, "status")
    assert code == 0, output
    assert "sent to the retrain service (test-service)" in output
    assert "retrain emails" in output
    assert "promoted, v1" in output
    assert status_code == 0, status
    assert "service test-service" in status
    assert "promoted v1" in status


def test_a_bad_schedule_is_one_line_naming_the_setting(retrain_settings: Settings) -> None:
    code, output = _invoke(
        with_retrain(retrain_settings, emails_schedule="hourly"), "serve", "--max-runs", "1"
    )
    assert code == 1
    assert "INFERLOOP_RETRAIN__EMAILS_SCHEDULE" in output
    assert "Traceback" not in output


def test_an_unreachable_redis_is_one_line_naming_its_address(retrain_settings: Settings) -> None:
    port = free_port()
    unreachable = retrain_settings.model_copy(
        update={
            "redis": retrain_settings.redis.model_copy(
                update={"url": f"redis://127.0.0.1:{port}/0", "connect_timeout_s": 0.5}
            )
        }
    )
    for command in (["run", "emails"], ["status"]):
        code, output = _invoke(unreachable, *command)
        assert code == 1
        assert f"Redis unreachable at 127.0.0.1:{port}" in output
        assert "Traceback" not in output


def test_status_keeps_a_skip_apart_from_the_last_promotion(
    retrain_settings: Settings, labels_topic: str
) -> None:
    produce(retrain_settings, labels_topic, emails(300))
    assert _invoke(retrain_settings, "run", "emails", "--in-process")[0] == 0
    code, output = _invoke(retrain_settings, "run", "emails", "--in-process")
    assert code == 0, output
    assert "skipped" in output

    code, output = _invoke(retrain_settings, "status", "emails", "--json")
    assert code == 0, output
    (status,) = json.loads(output)["domains"]
    assert status["last_run"]["outcome"] == "skipped"
    kinds = status["last_by_outcome"]
    assert list(kinds) == ["promoted", "skipped"]
    assert (kinds["promoted"]["version"], kinds["skipped"]["version"]) == (1, None)

    code, table = _invoke(retrain_settings, "status", "emails")
    assert code == 0, table
    assert "last success" not in table
    assert "last promoted" in table
    (promoted,) = [line for line in table.splitlines() if "│ promoted" in line]
    assert "v1" in promoted
    assert any("│ skipped" in line for line in table.splitlines())


def test_status_shows_a_challenger_run_apart_from_the_last_promotion(
    retrain_settings: Settings, redis_client: redis.Redis
) -> None:
    from inferloop.retrain.outcome import Outcome, RunOutcome
    from inferloop.retrain.status import record_run

    keys = Keys(retrain_settings.redis.key_prefix)
    at = "2026-12-07T10:00:0{}.000+00:00"
    runs: list[tuple[Outcome, int, str]] = [
        ("promoted", 1, "first model"),
        ("challenger", 2, "shadow-first: cool-down after the rollback of v3; better"),
    ]
    for outcome, version, reason in runs:
        record_run(
            redis_client,
            keys,
            RunOutcome(
                f"run{version}",
                "emails",
                "cli",
                outcome,
                reason,
                at.format(version),
                finished_at=at.format(version + 1),
                version=version,
            ),
        )
    code, output = _invoke(retrain_settings, "status", "emails", "--json")
    assert code == 0, output
    (status,) = json.loads(output)["domains"]
    assert status["last_run"]["outcome"] == "challenger"
    assert list(status["last_by_outcome"]) == ["promoted", "challenger"]
    assert status["last_success_at"] == at.format(3)

    code, table = _invoke(retrain_settings, "status", "emails")
    assert code == 0, table
    (challenger,) = [line for line in table.splitlines() if "│ emails │ challenger" in line]
    assert "v2" in challenger
    assert "shadow-first: cool-down" in challenger
    first = next(line for line in table.splitlines() if line.startswith("│ emails"))
    assert "challenger v2" in first  # the last run
    assert "v1" in first  # the last promotion


def _run_command(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command in a process of its own, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "inferloop", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_missing_signing_key_is_one_clear_line_and_exit_status_1(
    retrain_settings: Settings, labels_topic: str
) -> None:
    unsigned = retrain_settings.model_copy(
        update={"registry": retrain_settings.registry.model_copy(update={"signing_key_path": None})}
    )
    done = _run_command(unsigned, "retrain", "run", "emails", "--in-process")
    assert done.returncode == 1, done.stderr
    assert "Error: retrain emails failed: RetrainError: no signing key" in done.stderr
    assert "Traceback" not in done.stderr
    # Debugging, the traceback is there.
    verbose = _run_command(unsigned, "--verbose", "retrain", "run", "emails", "--in-process")
    assert verbose.returncode == 1
    assert "Traceback" in verbose.stderr


def test_too_few_positives_for_the_folds_is_one_clear_line(
    retrain_settings: Settings, labels_topic: str
) -> None:
    rare = [dict(e, label="ham") for e in emails(300)]
    for example in rare[100:102]:
        example["label"] = "spam"
    produce(retrain_settings, labels_topic, rare)
    done = _run_command(retrain_settings, "retrain", "run", "emails", "--in-process")
    assert done.returncode == 1, done.stderr
    assert "forward folds need at least" in done.stderr
    assert "Traceback" not in done.stderr
