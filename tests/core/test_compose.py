"""docker-compose.yml is valid and in step with the local path (no engine runs here)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from inferloop.local.kafka import server_properties
from inferloop.settings import LocalServicesSettings, Settings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_compose_file_matches_the_compose_specification() -> None:
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    jsonschema.validate(_compose(), schema)


@pytest.mark.parametrize("service", ["topics", "worker-emails", "retrain", "monitor", "replay"])
def test_every_inferloop_variable_is_a_valid_setting(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _compose()["services"][service]["environment"]
    ours = {k: str(v) for k, v in env.items() if k.startswith("INFERLOOP_")}
    assert ours
    for key, value in ours.items():
        monkeypatch.setenv(key, value)
    # The settings the container would build; an unknown name or bad value raises.
    settings = Settings()
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.redis.url == "redis://redis:6379/0"


def test_broker_configuration_matches_the_local_broker() -> None:
    compose_env = _compose()["services"]["kafka"]["environment"]
    local = {}
    for line in server_properties(port=1, controller_port=2, data_dir=Path("/d")).splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            local[key] = value
    shared = [
        "auto.create.topics.enable",
        "num.partitions",
        "offsets.topic.replication.factor",
        "offsets.topic.num.partitions",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "group.initial.rebalance.delay.ms",
        "group.min.session.timeout.ms",
    ]
    for key in shared:
        env_name = "KAFKA_" + key.upper().replace(".", "_")
        assert str(compose_env[env_name]) == local[key], key
    assert compose_env.get("KAFKA_HEAP_OPTS", "").startswith(
        f"-Xmx{LocalServicesSettings().kafka_heap}"
    )
    assert _compose()["services"]["kafka"]["image"].endswith(LocalServicesSettings().kafka_version)


def test_the_monitor_serves_every_domain_and_answers_outside_its_container() -> None:
    service = _compose()["services"]["monitor"]
    assert service["command"] == ["monitor", "serve"]
    assert service["environment"]["INFERLOOP_MONITOR__METRICS_HOST"] == "0.0.0.0"


def test_redis_persistence_matches_the_local_server() -> None:
    command = _compose()["services"]["redis"]["command"]
    flags = dict(zip(command[1::2], command[2::2], strict=True))
    assert flags == {
        "--appendonly": "yes",
        "--appendfsync": "always",
        "--maxmemory-policy": "noeviction",
    }


def test_dockerfile_copies_every_package_folder() -> None:
    # The image is built from the repository: every folder the distribution packages
    # must be copied before the final `uv sync`.
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = {line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ")}
    assert {"pyproject.toml", "inferloop"} <= copied
    assert "uv sync --frozen --no-dev --no-editable" in dockerfile
