"""``inferloop evaluate`` on real data, and the small parsers of the data commands."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from inferloop.cli import cli
from inferloop.cli.data import parse_rate
from inferloop.domains import get_domain
from inferloop.domains.replay import gets_label, labelled_json
from inferloop.domains.replay_ledger import ResumeState
from inferloop.settings import Settings
from tests.domains.factories import encode, transaction_dict
from tests.helpers import settings_env


@pytest.mark.slow
def test_evaluate_sms_reports_every_metric_and_the_scoring_rate() -> None:
    result = CliRunner().invoke(
        cli, ["evaluate", "emails", "--dataset", "sms", "--folds", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["duplicates_removed"] == 403
    assert report["train"] + report["holdout"] == 5574 - 403
    metrics = report["holdout_metrics"]
    for name in ("precision", "recall", "f1", "mcc", "roc_auc", "auprc", "fpr", "f1_at_ham_0.5pct"):
        assert 0.0 <= metrics[name] <= 1.0
    assert metrics["mcc"] > 0.9
    assert report["scoring_events_per_s"] > 0
    assert report["scoring"]["batch_size"] == 1000


def test_evaluate_refuses_a_data_set_of_another_domain() -> None:
    result = CliRunner().invoke(cli, ["evaluate", "transactions", "--dataset", "sms"])
    assert result.exit_code == 2
    assert "emails domain" in result.output


@pytest.mark.parametrize(("text", "rate"), [("500/s", 500.0), ("2.5", 2.5), ("max", None)])
def test_rates_parse(text: str, rate: float | None) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["fast", "0/s", "-3", "nan"])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_rate(text)


def test_labelled_json_is_the_event_plus_label_fields() -> None:
    event = encode(transaction_dict(7))
    value = labelled_json(event, "fraud", datetime(2024, 1, 1, tzinfo=UTC), "chargeback")
    parsed = get_domain("transactions").parse_labelled([value])
    assert parsed.rejects == []
    assert parsed.ids == ["tx-7"]
    assert parsed.y.tolist() == [1]
    assert json.loads(value)["label_source"] == "chargeback"


def test_label_selection_is_stable_and_near_the_fraction() -> None:
    ids = [f"cc-{i:06d}" for i in range(20_000)]
    chosen = [gets_label(i, 0.3) for i in ids]
    assert chosen == [gets_label(i, 0.3) for i in ids]
    assert 0.28 < sum(chosen) / len(ids) < 0.32
    assert all(gets_label(i, 1.0) for i in ids[:100])
    assert not any(gets_label(i, 0.0) for i in ids[:100])


@pytest.mark.parametrize("command", ["evaluate", "replay"])
def test_data_commands_read_the_data_sets_from_data_dir(command: str, tmp_path: Path) -> None:
    # Before: "No such option: --data-dir" (exit 2); only demo had it.
    empty = tmp_path / "empty"
    empty.mkdir()
    extra = ["--no-create-topics"] if command == "replay" else []
    result = CliRunner().invoke(
        cli, [command, "emails", "--dataset", "sms", "--data-dir", str(empty), *extra]
    )
    assert result.exit_code == 1, result.output
    assert f"looked for {empty / 'sms_spam'}" in result.output


def test_replay_reads_the_data_set_under_data_dir(settings: Settings, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "sms_spam").mkdir(parents=True)
    # Only the first 100 lines of the collection: what replay sends proves where it read.
    lines = (settings.data_dir / "sms_spam" / "SMSSpamCollection").read_bytes().splitlines()
    (data_dir / "sms_spam" / "SMSSpamCollection").write_bytes(b"\n".join(lines[:100]) + b"\n")
    result = CliRunner(env=settings_env(settings)).invoke(
        cli,
        ["replay", "emails", "--dataset", "sms", "--data-dir", str(data_dir), "--rate", "max",
         "--label-delay-s", "0", "--no-progress", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["events_sent"] == 100


def test_a_resume_refuses_options_that_would_change_its_plan(tmp_path: Path) -> None:
    resume = tmp_path / "r.json"
    ResumeState(
        dataset="sms", domain="emails", events_topic="emails", labels_topic="emails.labels",
        plan={"limit": 10}, next_position=3,
    ).write(resume)  # fmt: skip
    result = CliRunner().invoke(
        cli, ["replay", "emails", "--resume", str(resume), "--limit", "5", "--event-time", "send"]
    )
    assert result.exit_code == 2
    assert "drop --limit, --event-time" in result.output
