"""Cross-source evaluation: train on one data set, judge on another it never saw."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from inferloop.cli import cli
from inferloop.domains import schemas as s
from inferloop.domains.cross_source import CrossSourceError, check_sides, dataset_part
from inferloop.domains.datasets import SPAMASSASSIN_FOLDERS, Dataset
from inferloop.settings import Settings


def _dataset(y: list[int], by_class: bool) -> Dataset:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    events = [
        s.EmailEvent(
            id=f"e{i}",
            event_time=start + timedelta(minutes=i),
            schema_version=s.EMAILS_SCHEMA_VERSION,
            sender="",
            body=f"text {i}",
        )
        for i in range(len(y))
    ]
    return Dataset("t", "emails", events, np.array(y, dtype=np.int8), Path("."), by_class)


def test_the_halves_are_disjoint_and_the_newer_one_is_newer() -> None:
    # Spam all early, ham all late (SpamAssassin's shape): halves are cut per class.
    data = _dataset([1] * 10 + [0] * 30, by_class=True)
    older, newer = dataset_part(data, "older"), dataset_part(data, "newer")
    assert {e.id for e in older.events}.isdisjoint(e.id for e in newer.events)
    assert len(older) + len(newer) == 40
    assert (int(older.y.sum()), int(newer.y.sum())) == (5, 5)
    for label in (0, 1):
        old_times = [e.event_time for e, y in zip(older.events, older.y, strict=True) if y == label]
        new_times = [e.event_time for e, y in zip(newer.events, newer.y, strict=True) if y == label]
        assert max(old_times) < min(new_times)
    assert dataset_part(data, "all") is data


@pytest.mark.parametrize(
    ("train", "train_part", "test", "test_part"),
    [
        ("sms", "all", "sms", "all"),
        ("sms", "all", "sms", "newer"),
        ("sms", "older", "sms", "older"),
        ("sms", "all", "creditcard", "all"),
        ("sms", "first", "spamassassin", "all"),
        ("enron", "all", "spamassassin", "all"),
    ],
)
def test_pairs_that_share_examples_or_mix_domains_are_refused(
    train: str, train_part: str, test: str, test_part: str
) -> None:
    with pytest.raises(CrossSourceError):
        check_sides(train, train_part, test, test_part)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("train", "train_part", "test", "test_part"),
    [
        ("sms", "all", "spamassassin", "all"),
        ("spamassassin", "older", "sms", "newer"),
        ("sms", "older", "sms", "newer"),
    ],
)
def test_disjoint_pairs_of_one_domain_are_accepted(
    train: str, train_part: str, test: str, test_part: str
) -> None:
    assert check_sides(train, train_part, test, test_part) == "emails"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --dataset, or --train-dataset and --test-dataset"),
        (["--dataset", "sms", "--train-dataset", "sms"], "not both"),
        (["--train-dataset", "sms"], "needs both --train-dataset and --test-dataset"),
        (["--test-dataset", "sms"], "needs both --train-dataset and --test-dataset"),
        (["--dataset", "sms", "--test-part", "newer"], "--test-part applies only with"),
        (
            [
                "--train-dataset",
                "sms",
                "--test-dataset",
                "spamassassin",
                "--holdout-fraction",
                "0.3",
            ],
            "--holdout-fraction applies only with --dataset",
        ),
        (["--train-dataset", "sms", "--test-dataset", "sms"], "shares examples"),
        (["--train-dataset", "sms", "--test-dataset", "creditcard"], "transactions domain"),
    ],
)
def test_evaluate_refuses_bad_combinations_of_options(args: list[str], message: str) -> None:
    # Before: --train-dataset was no option at all, and --dataset was required.
    result = CliRunner().invoke(cli, ["evaluate", "emails", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_evaluate_refuses_email_data_sets_for_transactions() -> None:
    result = CliRunner().invoke(
        cli,
        ["evaluate", "transactions", "--train-dataset", "sms", "--test-dataset", "spamassassin"],
    )
    assert result.exit_code == 2
    assert "of the emails domain, not transactions" in result.output


def _small_data_dir(settings: Settings, root: Path) -> Path:
    """The first 800 SMS lines and the first 60 messages of each SpamAssassin folder."""
    (root / "sms_spam").mkdir(parents=True)
    lines = (settings.data_dir / "sms_spam" / "SMSSpamCollection").read_bytes().splitlines()
    (root / "sms_spam" / "SMSSpamCollection").write_bytes(b"\n".join(lines[:800]) + b"\n")
    for folder in SPAMASSASSIN_FOLDERS:
        source = settings.data_dir / "spamassassin" / folder
        target = root / "spamassassin" / folder
        target.mkdir(parents=True)
        for path in sorted(p for p in source.iterdir() if p.is_file())[:60]:
            shutil.copyfile(path, target / path.name)
    return root


@pytest.mark.slow
def test_evaluate_trains_on_one_source_and_judges_on_the_other(
    settings: Settings, tmp_path: Path
) -> None:
    data_dir = _small_data_dir(settings, tmp_path / "data")
    result = CliRunner().invoke(
        cli,
        ["evaluate", "emails", "--train-dataset", "sms", "--test-dataset", "spamassassin",
         "--test-part", "newer", "--folds", "2", "--data-dir", str(data_dir), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["train"]["dataset"] == "sms"
    assert report["train"]["part"] == "all"
    test = report["test"]
    assert (test["dataset"], test["part"]) == ("spamassassin", "newer")
    # The newer half of each class of the 300 messages (one is a duplicate).
    assert test["duplicates"] == 1
    assert test["examples"] == 150
    metrics = report["metrics"]
    assert metrics["n"] == test["examples"]
    assert metrics["positives"] == test["positives"] == 60
    assert 0.0 <= metrics["fpr"] <= 1.0
    assert "f1_at_ham_0.5pct" in metrics
    assert report["params"]["test_realised"]["errors"] == metrics["fp"]
