"""Settings come from the environment, once, with clear errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from inferloop.settings import Settings


def test_nested_settings_come_from_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERLOOP_KAFKA__BOOTSTRAP_SERVERS", "k1:9092, k2:9093")
    monkeypatch.setenv("INFERLOOP_REDIS__KEY_PREFIX", "prod")
    monkeypatch.setenv("INFERLOOP_TOPICS__PARTITIONS", "12")
    monkeypatch.setenv("INFERLOOP_WORKER__DELIVERY", "exactly-once")

    settings = Settings()

    assert settings.kafka.servers == ["k1:9092", "k2:9093"]
    assert settings.redis.key_prefix == "prod"
    assert settings.topics.partitions == 12
    assert settings.worker.delivery == "exactly-once"


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERLOOP_KAFKA__SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("INFERLOOP_REDIS__PASSWORD", "swordfish")

    settings = Settings()

    assert "hunter2" not in repr(settings)
    assert "swordfish" not in repr(settings)
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == "hunter2"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("INFERLOOP_KAFKA__BOOTSTRAP_SERVERS", "no-port"),
        ("INFERLOOP_REDIS__URL", "http://example"),
        ("INFERLOOP_TOPICS__PARTITIONS", "0"),
        ("INFERLOOP_WORKER__DELIVERY", "at-most-once"),
        ("INFERLOOP_REDIS__KEY_PREFIX", "has space"),
        ("INFERLOOP_WORKER__FETCH_MIN_BYTES", "0"),
        ("INFERLOOP_WORKER__FETCH_MAX_WAIT_MS", "-1"),
    ],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(kafka={"bootstrap_server": "typo:9092"})


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.log_level = "DEBUG"  # type: ignore[misc]


def test_environment_is_read_when_built_not_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    before = Settings()
    monkeypatch.setenv("INFERLOOP_TOPICS__PREFIX", "late-")
    assert before.topics.prefix == ""
    assert Settings().topics.prefix == "late-"


def test_verify_keys_are_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERLOOP_REGISTRY__VERIFY_KEY_PATHS", "/k/old.pub,/k/new.pub")
    assert [str(p) for p in Settings().registry.verify_key_paths] == ["/k/old.pub", "/k/new.pub"]


def test_to_env_rebuilds_the_same_settings_secrets_included(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = Settings(
        kafka={"bootstrap_servers": "k:1", "sasl_password": "s3cret"},
        registry={"verify_key_paths": ("/a.pub", "/b.pub"), "allow_unsigned": True},
        topics={"prefix": "x-"},
    )
    env = original.to_env()
    assert env["INFERLOOP_KAFKA__SASL_PASSWORD"] == "s3cret"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert Settings() == original
