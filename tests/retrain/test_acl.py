"""The retrain job and service work as the registry's ``retrain`` ACL user; an operator
queues triggers and reads the status, and is told it cannot take the lock itself."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from click.testing import CliRunner
from pydantic import SecretStr

from inferloop.cli import cli
from inferloop.keys import Keys
from inferloop.registry import Registry
from inferloop.registry.acl import setuser_line
from inferloop.retrain.job import RetrainJob, RunRequest
from inferloop.retrain.triggers import Trigger, TriggerQueue, new_trigger_id
from inferloop.settings import Settings
from tests.helpers import settings_env
from tests.retrain.conftest import serving
from tests.retrain.factories import emails, produce

AsRole = Callable[[str], Settings]


@pytest.fixture
def as_role(retrain_settings: Settings, redis_client: redis.Redis) -> Iterator[AsRole]:
    """``as_role(role)``: the test's settings logged in as a new Redis user of ``role``."""
    users: list[str] = []

    def make(role: str) -> Settings:
        user, password = f"{role}-{uuid.uuid4().hex[:8]}", secrets.token_hex(16)
        line = setuser_line(role, user, retrain_settings.redis.key_prefix, secret=password)
        _, _, _, *rules = line.split()
        redis_client.execute_command("ACL", "SETUSER", user, *rules)  # type: ignore[no-untyped-call]
        users.append(user)
        section = retrain_settings.redis.model_copy(
            update={"username": user, "password": SecretStr(password)}
        )
        return retrain_settings.model_copy(update={"redis": section})

    yield make
    for user in users:
        redis_client.acl_deluser(user)


def test_the_retrain_user_runs_the_job_and_the_service(
    labels_topic: str, retrain_settings: Settings, as_role: AsRole
) -> None:
    # 400: the holdout then holds the 50 ham a comparison at a matched operating point needs.
    produce(retrain_settings, labels_topic, emails(400))
    settings = as_role("retrain")
    scheduled = settings.model_copy(
        update={"retrain": settings.retrain.model_copy(update={"emails_schedule": "2s"})}
    )
    with Registry.from_settings(settings) as registry:
        first = RetrainJob(settings, registry).run(RunRequest("emails"))
        assert first.outcome == "promoted", first.reason
        queue = TriggerQueue(registry.client, Keys(settings.redis.key_prefix), outcome_ttl_s=60)
        trigger = Trigger(new_trigger_id(), "emails", True, "pytest", "2025-01-01T00:00:00Z")
        with serving(settings, registry) as (_, reports):
            queue.send(trigger)
            triggered = queue.wait(trigger.trigger_id, timeout_s=60)
        with serving(scheduled, registry) as (service, scheduled_reports):
            deadline = time.monotonic() + 30
            while b'result="run"' not in service.metrics.render() and time.monotonic() < deadline:
                time.sleep(0.2)
    assert triggered.outcome == "rejected", triggered.reason  # the same data: no real win
    (report,) = reports
    (fired,) = scheduled_reports
    assert [run.trigger for run in report.runs] == ["operator"]
    assert [run.trigger for run in fired.runs] == ["schedule"]
    assert fired.runs[0].outcome == "skipped"  # nothing new since the champion's data


def test_an_operator_queues_a_trigger_and_reads_the_status(
    labels_topic: str, retrain_settings: Settings, as_role: AsRole
) -> None:
    produce(retrain_settings, labels_topic, emails(300))
    operator = as_role("operator")
    assert operator.redis.password is not None
    # settings_env prints secrets masked; the password goes in by itself.
    env = settings_env(operator) | {
        "INFERLOOP_REDIS__PASSWORD": operator.redis.password.get_secret_value()
    }
    invoke = CliRunner(env=env).invoke
    alone = invoke(cli, ["retrain", "run", "emails"])
    assert alone.exit_code == 1
    assert "may not do this" in alone.output
    assert "Traceback" not in alone.output
    service_settings = as_role("retrain")
    with Registry.from_settings(service_settings) as registry, serving(service_settings, registry):
        queued = invoke(cli, ["retrain", "run", "emails", "--wait", "--timeout-s", "60"])
        status = invoke(cli, ["retrain", "status"])
    assert queued.exit_code == 0, queued.output
    assert "promoted, v1" in queued.output
    assert status.exit_code == 0, status.output
    assert "promoted v1" in status.output
