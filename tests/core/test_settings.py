"""Settings come from the environment, once, with clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from inferloop.errors import UnknownSettingError
from inferloop.settings import NOT_SETTINGS, Settings, setting_variables

ROOT = Path(__file__).resolve().parents[2]


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


def test_a_misspelt_variable_is_an_error_naming_the_valid_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The outage of issue 31: the section is SERVICES, and the typo was silently ignored.
    monkeypatch.setenv("INFERLOOP_LOCAL__KAFKA_PORT", "29092")
    monkeypatch.setenv("INFERLOOP_REDIS__KEYPREFIX", "prod")
    with pytest.raises(UnknownSettingError) as raised:
        Settings()
    message = str(raised.value)
    assert (
        "INFERLOOP_LOCAL__KAFKA_PORT is not a setting (did you mean "
        "INFERLOOP_SERVICES__KAFKA_PORT?)" in message
    )
    assert "INFERLOOP_REDIS__KEYPREFIX is not a setting (did you mean " in message
    assert "INFERLOOP_REDIS__KEY_PREFIX?)" in message


def test_valid_names_in_any_case_a_whole_section_and_the_scripts_own_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("inferloop_services__kafka_port", "29092")
    monkeypatch.setenv("INFERLOOP_TOPICS", '{"prefix": "x-"}')
    for name in NOT_SETTINGS:
        monkeypatch.setenv(name, "/somewhere")
    settings = Settings()
    assert settings.services.kafka_port == 29092
    assert settings.topics.prefix == "x-"


def test_every_variable_the_project_sets_or_documents_is_a_setting() -> None:
    places = [ROOT / d for d in ("scripts", "inferloop", "tests", "docs", "bench")]
    files = [p for d in places if d.is_dir() for p in d.rglob("*") if p.is_file()]
    files += [ROOT / n for n in ("docker-compose.yml", "Dockerfile", "README.md")]
    found: dict[str, Path] = {}
    for path in files:
        if not path.exists() or path.suffix in {".pyc", ".png", ".json"}:
            continue
        text = path.read_text(errors="replace")
        # A name cut at "__" is a section being described, not a variable.
        for name in re.findall(r"INFERLOOP_[A-Z0-9_]*[A-Z0-9]\b", text):
            found.setdefault(name, path)
    assert found, "no variables found: the scan is broken"
    valid = setting_variables() | NOT_SETTINGS
    # Names built in code (f"INFERLOOP_RETRAIN__{domain.upper()}_SCHEDULE") and this
    # file's own misspellings are not variables of the project.
    own_typos = {"INFERLOOP_LOCAL__KAFKA_PORT", "INFERLOOP_REDIS__KEYPREFIX"}
    unknown = {n: str(p) for n, p in found.items() if n not in valid | own_typos}
    assert not unknown
