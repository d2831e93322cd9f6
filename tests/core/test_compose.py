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


def _prometheus_config(service: dict[str, Any]) -> tuple[dict[str, Path], Path]:
    """The prometheus service's mounts ({container path: host path}) and the host path
    of the configuration its command names."""
    mounts = {}
    for volume in service["volumes"]:
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            mounts[target] = ROOT / source
    flag = next(arg for arg in service["command"] if arg.startswith("--config.file="))
    config = Path(flag.partition("=")[2])
    host = next(mounts[t] / config.relative_to(t) for t in mounts if config.is_relative_to(t))
    return mounts, host


def test_prometheus_mounts_existing_files_and_reads_the_compose_configuration() -> None:
    mounts, config = _prometheus_config(_compose()["services"]["prometheus"])
    assert mounts
    for host in mounts.values():
        assert host.is_dir(), host
    assert config == ROOT / "deploy/prometheus/prometheus-compose.yml"
    loaded = yaml.safe_load(config.read_text())
    # Rule files are named relative to the configuration, so the mount carries them.
    for pattern in loaded["rule_files"]:
        assert list(config.parent.glob(pattern)), pattern


def test_prometheus_scrapes_the_compose_services_on_their_metrics_ports() -> None:
    compose = _compose()
    _, config = _prometheus_config(compose["services"]["prometheus"])
    targets: dict[str, set[str]] = {}
    for job in yaml.safe_load(config.read_text())["scrape_configs"]:
        found = targets.setdefault(job["job_name"], set())
        for static in job.get("static_configs", []):
            found.update(static["targets"])
        for dns in job.get("dns_sd_configs", []):
            found.update(f"{name}:{dns['port']}" for name in dns["names"])
    settings = Settings()
    worker, retrain = settings.worker.metrics_port, settings.retrain.metrics_port
    monitor = settings.monitor.metrics_port
    assert targets == {
        "inferloop-worker": {f"worker-emails:{worker}", f"worker-transactions:{worker}"},
        "inferloop-retrain": {f"retrain:{retrain}"},
        "inferloop-monitor": {f"monitor:{monitor}", f"monitor:{monitor + 1}"},
    }
    for target in set().union(*targets.values()):
        assert target.partition(":")[0] in compose["services"], target
