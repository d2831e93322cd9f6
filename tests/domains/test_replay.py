"""Replay into the real Kafka, read back: exactly once, in order, labels after their delay."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from inferloop.cli import cli
from inferloop.domains import get_domain
from inferloop.domains.datasets import Dataset, load_creditcard, load_sms
from inferloop.domains.replay import ReplayError, ReplayPlan, gets_label, replay, selection
from inferloop.settings import Settings
from inferloop.topics import create_domain_topics, for_settings
from tests.helpers import read_topic, settings_env

TRANSACTIONS = get_domain("transactions")


@pytest.fixture(scope="module")
def creditcard() -> Dataset:
    return load_creditcard(Settings().data_dir)


def test_replay_of_10000_transactions_arrives_once_in_order_with_delayed_labels(
    settings: Settings, creditcard: Dataset
) -> None:
    create_domain_topics(settings, "transactions")
    topics = for_settings(settings, "transactions")
    plan = ReplayPlan(label_delay_s=1.5, label_fraction=0.5, limit=10_000, start_fraction=0.3)
    expected = [creditcard.events[i] for i in selection(creditcard, plan)]
    labelled_ids = {e.id for e in expected if gets_label(e.id, 0.5)}

    summary = replay(settings, creditcard, plan)

    assert summary.events_sent == 10_000
    assert summary.labels_sent == len(labelled_ids)
    assert summary.labels_withheld == 10_000 - len(labelled_ids)
    assert 0.4 < len(labelled_ids) / 10_000 < 0.6

    events = read_topic(settings, topics.events, expect=10_000)
    assert len(events) == 10_000
    keys = [r.key.decode() for r in events]
    assert sorted(keys) == sorted(e.id for e in expected)  # every event, exactly once
    by_partition: dict[int, list[tuple[int, datetime]]] = defaultdict(list)
    for record in events:
        event_time = datetime.fromisoformat(json.loads(record.value)["event_time"])
        by_partition[record.partition].append((record.offset, event_time))
    assert len(by_partition) > 1
    for rows in by_partition.values():
        times = [t for _, t in sorted(rows)]
        assert times == sorted(times)

    labels = read_topic(settings, topics.labels, expect=len(labelled_ids))
    assert {r.key.decode() for r in labels} == labelled_ids
    assert len(labels) == len(labelled_ids)
    sent_at = {r.key: r.timestamp for r in events}
    for record in labels:
        assert record.timestamp >= sent_at[record.key] + 1_500
    parsed = TRANSACTIONS.parse_labelled([r.value for r in labels])
    assert parsed.rejects == []
    truth = {creditcard.events[i].id: int(creditcard.y[i]) for i in selection(creditcard, plan)}
    assert [truth[i] for i in parsed.ids] == parsed.y.tolist()
    assert (parsed.labelled_at_s > parsed.event_time_s).all()


def test_labels_only_seeds_history_without_events(settings: Settings) -> None:
    create_domain_topics(settings, "emails")
    topics = for_settings(settings, "emails")
    sms = load_sms(settings.data_dir)
    calls: list[tuple[int, int]] = []
    summary = replay(
        settings, sms, ReplayPlan(labels_only=True, end_fraction=0.1),
        progress=lambda done, labels: calls.append((done, labels)), progress_every=100,
    )  # fmt: skip
    assert summary.events_sent == 0
    # Progress counts the positions passed, labels-only too (it stayed at 0 events).
    assert calls[-1] == (int(0.1 * len(sms)), summary.labels_sent)
    assert len(calls) > 3
    assert summary.labels_sent == int(0.1 * len(sms))
    assert read_topic(settings, topics.events) == []
    labels = read_topic(settings, topics.labels, expect=summary.labels_sent)
    parsed = get_domain("emails").parse_labelled([r.value for r in labels])
    assert len(parsed) == summary.labels_sent
    assert parsed.rejects == []


def test_replay_plan_refuses_an_empty_slice() -> None:
    with pytest.raises(ReplayError):
        ReplayPlan(start_fraction=0.6, end_fraction=0.5)


def test_replay_command_prints_a_summary(settings: Settings) -> None:
    env = settings_env(settings)
    result = CliRunner(env=env).invoke(
        cli,
        [
            "replay",
            "emails",
            "--dataset",
            "sms",
            "--limit",
            "300",
            "--rate",
            "max",
            "--label-delay-s",
            "0",
            "--no-progress",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["events_sent"] == 300
    assert summary["labels_sent"] == 300
    assert len(read_topic(settings, for_settings(settings, "emails").events, expect=300)) == 300


def test_replay_command_refuses_a_data_set_of_another_domain() -> None:
    result = CliRunner().invoke(cli, ["replay", "emails", "--dataset", "creditcard"])
    assert result.exit_code == 2
    assert "transactions domain" in result.output


def run_replay_command(settings: Settings, *args: str) -> dict[str, object]:
    """``inferloop replay ... --json`` against ``settings``; its summary."""
    result = CliRunner(env=settings_env(settings)).invoke(
        cli, ["replay", *args, "--rate", "max", "--no-progress", "--json"]
    )
    assert result.exit_code == 0, result.output
    summary: dict[str, object] = json.loads(result.stdout)
    return summary


def test_event_time_send_stamps_each_event_and_its_label_with_the_send_time(
    settings: Settings,
) -> None:
    # Before: the data set's own times (SMS: made up, from 2011), so a second data set
    # replayed after a first could be older than it and never held out.
    topics = for_settings(settings, "emails")
    before = datetime.now(UTC)
    run_replay_command(settings, "emails", "--dataset", "sms", "--limit", "200",
                       "--event-time", "send", "--label-delay-s", "0")  # fmt: skip
    after = datetime.now(UTC)

    events = read_topic(settings, topics.events, expect=200)
    times = {r.key: datetime.fromisoformat(json.loads(r.value)["event_time"]) for r in events}
    assert len(times) == 200
    for record in events:
        assert before <= times[record.key] <= after
        assert times[record.key].timestamp() * 1000 == record.timestamp  # sent then
    labels = read_topic(settings, topics.labels, expect=200)
    for record in labels:
        assert datetime.fromisoformat(json.loads(record.value)["event_time"]) == times[record.key]
    parsed = get_domain("emails").parse_labelled([r.value for r in labels])
    assert parsed.rejects == []
    assert (parsed.labelled_at_s >= parsed.event_time_s).all()


def test_feedback_labels_every_reported_positive_and_the_appealed_share_of_negatives(
    settings: Settings,
) -> None:
    topics = for_settings(settings, "emails")
    sms = load_sms(settings.data_dir)
    plan = ReplayPlan(label_policy="feedback", false_positive_report_share=0.1, limit=1_000)
    positions = selection(sms, plan)
    spam = {sms.events[i].id for i in positions if sms.y[i] == 1}
    ham = {sms.events[i].id for i in positions if sms.y[i] == 0}
    appealed = {i for i in ham if gets_label(i, 0.1)}

    summary = run_replay_command(settings, "emails", "--dataset", "sms", "--limit", "1000",
                                 "--label-policy", "feedback", "--label-delay-s", "0",
                                 "--false-positive-report-share", "0.1")  # fmt: skip

    assert summary["labels_sent"] == len(spam) + len(appealed)
    assert summary["labels_withheld"] == len(ham) - len(appealed)
    labels = read_topic(settings, topics.labels, expect=len(spam) + len(appealed))
    assert {r.key.decode() for r in labels} == spam | appealed
    assert len(spam) > 100
    assert 0.05 < len(appealed) / len(ham) < 0.15
    # The labelled set is mostly positives; every event was still sent.
    assert len(read_topic(settings, topics.events, expect=1_000)) == 1_000
