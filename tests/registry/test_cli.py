"""``inferloop registry`` and ``inferloop keys``: tables, JSON, one-line errors."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from click.testing import CliRunner, Result

from inferloop.cli import cli
from inferloop.registry import Registry
from inferloop.settings import Settings
from tests.helpers import settings_env
from tests.registry.factories import Register, RegistryFactory, Trained, train_transactions


@pytest.fixture
def run(registry_settings: Settings) -> Any:
    """``run(*args, settings=None)``: the CLI in this process with the test's settings."""

    def invoke(*args: str, settings: Settings | None = None) -> Result:
        env = settings_env(settings or registry_settings)
        return CliRunner(env=env).invoke(cli, list(args))

    return invoke


def _ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def _one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_list_show_promote_history_and_rollback(
    run: Any, register: Register, tx_model: Trained
) -> None:
    first = register(tx_model)
    second = register(train_transactions(seed=1))
    assert "transactions" in _ok(run("registry", "list"))
    assert "candidate" in _ok(run("registry", "list", "transactions"))

    out = _ok(run("registry", "promote", "transactions", "1", "--reason", "first model"))
    assert "nothing -> v1" in out
    out = _ok(
        run("registry", "promote", "transactions", "2", "--reason", "better", "--expect", "1")
    )
    assert f"v1 ({first.artifact_digest[:12]}) -> v2 ({second.artifact_digest[:12]})" in out

    shown = json.loads(_ok(run("registry", "show", "transactions@champion", "--json")))
    assert (shown["version"], shown["status"], shown["aliases"]) == (2, "champion", ["champion"])
    assert shown["artifact_digest"] == second.artifact_digest
    assert shown["lineage"] == second.lineage
    table = _ok(run("registry", "show", "transactions:1"))
    assert first.artifact_digest in table
    assert "archived" in table

    _ok(run("registry", "rollback", "transactions", "--reason", "v2 misbehaves"))
    history = json.loads(_ok(run("registry", "history", "transactions", "--json")))
    assert [(e["action"], e["reason"]) for e in history] == [
        ("rollback", "v2 misbehaves"),
        ("promote", "better"),
        ("promote", "first model"),
    ]
    assert {e["user"] for e in history} == {"default"}
    assert "v2 misbehaves" in _ok(run("registry", "history", "transactions"))


def test_a_stale_promotion_is_a_one_line_error(
    run: Any, registry: Registry, register: Register, tx_model: Trained
) -> None:
    for seed in range(3):
        register(train_transactions(seed=seed))
    registry.promote("transactions", 2, expected_current=None, reason="x")
    line = _one_line_error(
        run("registry", "promote", "transactions", "3", "--reason", "y", "--expect", "1")
    )
    assert "another move came first" in line
    assert registry.resolve("transactions") == registry.get_version("transactions", 2).target


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["registry", "show", "nope:1"], "model 'nope' is not registered"),
        (["registry", "show", "transactions:9"], "transactions v9 does not exist"),
        (["registry", "show", "transactions@challenger"], "transactions@challenger is not set"),
        (["registry", "show", "transactions@latest!"], "alias 'latest!'"),
        (["registry", "rollback", "transactions", "--reason", "x"], "no previous champion"),
        (["registry", "delete", "transactions:1", "--reason", "x"], "points at v1"),
    ],
)
def test_errors_are_one_line(
    *,
    run: Any,
    registry: Registry,
    register: Register,
    tx_model: Trained,
    args: list[str],
    message: str,
) -> None:
    register(tx_model)
    registry.promote("transactions", 1, expected_current=None, reason="x")
    assert message in _one_line_error(run(*args))


def test_a_malformed_reference_is_a_usage_error(run: Any) -> None:
    result = run("registry", "show", "emails:three")
    assert result.exit_code == 2
    assert "is not NAME, NAME:VERSION or NAME@ALIAS" in result.output


def test_verify_reports_a_tampered_version_and_exits_non_zero(
    run: Any, registry: Registry, register: Register, tx_model: Trained, redis_client: redis.Redis
) -> None:
    register(tx_model)
    register(train_transactions(seed=1))
    assert "FAILED" not in _ok(run("registry", "verify"))
    redis_client.hdel(registry.keys.version("transactions", 2), "signature")

    result = run("registry", "verify", "transactions", "--json")
    assert result.exit_code == 1
    verdicts = json.loads(result.output[: result.output.rindex("]") + 1])
    assert [(v["version"], v["ok"]) for v in verdicts] == [(1, True), (2, False)]
    assert "1 of 2 versions failed verification" in result.output


def test_export_then_import_into_another_registry_round_trips(
    *,
    run: Any,
    registry: Registry,
    register: Register,
    tx_model: Trained,
    registry_settings: Settings,
    registry_factory: RegistryFactory,
    tmp_path: Path,
) -> None:
    stored = register(tx_model, tags={"team": "fraud"}, description="exported")
    registry.promote("transactions", 1, expected_current=None, reason="x")
    file = tmp_path / "transactions-v1.tar"
    _ok(run("registry", "export", "transactions@champion", str(file)))

    elsewhere = registry_settings.model_copy(
        update={
            "redis": registry_settings.redis.model_copy(
                update={"key_prefix": "other-" + registry.keys.prefix}
            )
        }
    )
    try:
        imported = json.loads(
            _ok(run("registry", "import", str(file), "--json", settings=elsewhere))
        )
        assert imported["version"] == 1
        assert imported["imported_from"]["digest"] == stored.artifact_digest
        assert (imported["tags"], imported["description"]) == ({"team": "fraud"}, "exported")
        loaded = registry_factory(elsewhere).load("transactions", 1)
        rows = tx_model.rows()
        assert np.array_equal(
            loaded.pipeline.predict_proba(rows), tx_model.pipeline.predict_proba(rows)
        )
        assert loaded.version.lineage == stored.lineage
        assert loaded.version.artifact_digest == stored.artifact_digest
    finally:
        client = redis.Redis.from_url(elsewhere.redis.url)
        doomed = list(client.scan_iter(match=f"{elsewhere.redis.key_prefix}:*"))
        if doomed:
            client.delete(*doomed)
        client.close()


def test_import_refuses_a_file_signed_by_an_untrusted_key(
    run: Any,
    register: Register,
    tx_model: Trained,
    registry_settings: Settings,
    tmp_path: Path,
) -> None:
    from inferloop.registry.signing import generate_key_pair

    register(tx_model)
    file = tmp_path / "v1.tar"
    _ok(run("registry", "export", "transactions:1", str(file)))
    stranger = generate_key_pair(tmp_path / "stranger", "stranger")
    other = registry_settings.model_copy(
        update={
            "registry": registry_settings.registry.model_copy(
                update={
                    "signing_key_path": stranger.private_path,
                    "verify_key_paths": (stranger.public_path,),
                }
            )
        }
    )
    assert "not trusted" in _one_line_error(run("registry", "import", str(file), settings=other))


def test_reports_delete_and_prune(
    run: Any, registry: Registry, register: Register, tx_model: Trained, tmp_path: Path
) -> None:
    for seed in range(3):
        register(train_transactions(seed=seed))
    registry.put_report("transactions", 1, {"report.md": b"# v1\n"})
    out_dir = tmp_path / "report"
    _ok(run("registry", "report", "transactions", "1", "--out", str(out_dir)))
    assert (out_dir / "report.md").read_bytes() == b"# v1\n"

    assert "artifact deleted" in _ok(run("registry", "delete", "transactions:1", "--reason", "x"))
    assert json.loads(_ok(run("registry", "prune", "transactions", "--keep", "1", "--json"))) == [2]
    assert "deleted" in _ok(run("registry", "list", "transactions"))


def test_keys_generate_writes_a_private_key_only_its_owner_reads(run: Any, tmp_path: Path) -> None:
    out = _ok(run("keys", "generate", "--out", str(tmp_path), "--name", "signer"))
    private, public = tmp_path / "signer.key", tmp_path / "signer.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PUBLIC KEY" in public.read_bytes()
    assert "INFERLOOP_REGISTRY__VERIFY_KEY_PATHS" in out
    assert "exists" in _one_line_error(
        run("keys", "generate", "--out", str(tmp_path), "--name", "signer")
    )
    _ok(run("keys", "generate", "--out", str(tmp_path), "--name", "signer", "--force"))


def test_the_console_script_prints_one_line_and_no_traceback(
    registry_settings: Settings,
) -> None:
    script = Path(sys.executable).parent / "inferloop"
    result = subprocess.run(
        [str(script), "registry", "show", "nope@champion"],
        capture_output=True,
        text=True,
        env=settings_env(registry_settings),
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: model 'nope' is not registered"
