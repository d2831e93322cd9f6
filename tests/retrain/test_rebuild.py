"""Rebuilding a version from its lineage reproduces its metrics and holdout predictions."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from inferloop.cli import cli
from inferloop.registry import Registry
from inferloop.retrain.job import RunRequest
from inferloop.retrain.rebuild import rebuild
from inferloop.retrain.report import METRICS_FILE, REPORT_FILES, report_folder
from inferloop.settings import Settings
from tests.helpers import settings_env
from tests.retrain.conftest import JobFactory
from tests.retrain.factories import emails, produce


def test_rebuild_reproduces_a_version_from_the_log(
    retrain_settings: Settings, labels_topic: str, registry: Registry, make_job: JobFactory
) -> None:
    produce(retrain_settings, labels_topic, emails(300))
    make_job().run(RunRequest("emails"))
    produce(retrain_settings, labels_topic, emails(300, start=300))
    outcome = make_job().run(RunRequest("emails", force=True))
    assert outcome.version == 2
    # More labels after the version: the rebuild reads only its own offsets.
    produce(retrain_settings, labels_topic, emails(100, start=600))
    # The cache is not what a rebuild reads: without it, the result is the same.
    shutil.rmtree(retrain_settings.retrain.snapshot_dir)
    result = rebuild(retrain_settings, registry, "emails", 2)
    assert result.matches
    assert result.records == 600
    assert result.examples == 600
    assert {m.name for m in result.metrics} >= {"f1", "auprc", "precision", "recall"}
    assert result.digest_recorded == result.digest_rebuilt
    assert not (retrain_settings.retrain.snapshot_dir).exists()


def test_the_rebuild_command_shows_the_match(
    retrain_settings: Settings, labels_topic: str, make_job: JobFactory, tmp_path: Path
) -> None:
    produce(retrain_settings, labels_topic, emails(300))
    make_job().run(RunRequest("emails"))
    result = CliRunner(env=settings_env(retrain_settings)).invoke(
        cli, ["retrain", "rebuild", "emails", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "holdout predictions sha256" in result.output
    assert ": match" in result.output
    # The report the run kept with the version comes back through the registry's CLI.
    out = tmp_path / "report"
    fetched = CliRunner(env=settings_env(retrain_settings)).invoke(
        cli, ["registry", "report", "emails", "1", "--out", str(out)]
    )
    assert fetched.exit_code == 0, fetched.output
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)
    assert (out / METRICS_FILE).read_bytes() == (
        report_folder(retrain_settings, "emails", 1) / METRICS_FILE
    ).read_bytes()
    missing = CliRunner(env=settings_env(retrain_settings)).invoke(
        cli, ["retrain", "rebuild", "emails", "9"]
    )
    assert missing.exit_code == 1
    assert "Traceback" not in missing.output
