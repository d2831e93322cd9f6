"""Replay through a broker outage and a SIGTERM: ridden out, or failed with a resume file
from which every event and label arrives.

The outage tests stop and restart a broker of their own, so the session's broker and
the tests beside them are not disturbed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from kafka import TopicPartition

from inferloop.cli import cli
from inferloop.connections import make_consumer
from inferloop.domains.datasets import Dataset, load_creditcard
from inferloop.domains.replay import ReplayPlan, ReplaySummary, gets_label, run_replay, selection
from inferloop.local.kafka import LocalKafka
from inferloop.settings import Domain, Settings
from inferloop.topics import create_domain_topics, for_settings
from tests.helpers import read_topic, settings_env

DOMAIN: Domain = "transactions"


@pytest.fixture(scope="module")
def creditcard() -> Dataset:
    return load_creditcard(Settings().data_dir)


def on_broker(settings: Settings, kafka: LocalKafka, tmp_path: Path, **replay: object) -> Settings:
    """``settings`` pointing at ``kafka``, with these replay settings."""
    return settings.model_copy(
        update={
            # A broker just started on a busy machine can take more than the session's 10 s.
            "kafka": settings.kafka.model_copy(
                update={"bootstrap_servers": kafka.address, "connect_timeout_s": 60}
            ),
            "replay": settings.replay.model_copy(
                update={"resume_dir": tmp_path / "resume", **replay}
            ),
        }
    )


def topic_size(settings: Settings, topic: str) -> int:
    """Records in ``topic`` (its end offsets summed)."""
    consumer = make_consumer(settings.kafka)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def wait_for_size(
    settings: Settings, topic: str, size: int, writer: threading.Thread | None = None
) -> None:
    """Wait until ``topic`` holds ``size`` records (while ``writer`` is alive, if given)."""
    deadline = time.monotonic() + 90
    while topic_size(settings, topic) < size:
        assert time.monotonic() < deadline, f"{topic} did not reach {size} records"
        assert writer is None or writer.is_alive(), "the replay ended early (see its error)"
        time.sleep(0.1)


def expected_ids(creditcard: Dataset, plan: ReplayPlan) -> tuple[list[str], set[str]]:
    """The ids of the plan's events, and those whose label comes back."""
    ids = [creditcard.events[i].id for i in selection(creditcard, plan)]
    return ids, {i for i in ids if gets_label(i, plan.label_fraction)}


def test_a_broker_outage_shorter_than_the_delivery_timeout_is_ridden_out(
    settings: Settings,
    own_kafka: LocalKafka,
    creditcard: Dataset,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Before: with nothing bounding what waited for the broker and no delivery timeout,
    # replay sent nothing more after the broker came back and flushed for good.
    # At most 1 MiB waits for the broker (about 1,500 events): replay waits with it.
    settings = on_broker(
        settings, own_kafka, tmp_path, delivery_timeout_s=90.0,
        max_unacknowledged_bytes=1024 * 1024,
    )  # fmt: skip
    create_domain_topics(settings, DOMAIN)
    topics = for_settings(settings, DOMAIN)
    plan = ReplayPlan(rate_per_s=1_000, label_delay_s=1.0, label_fraction=0.5, limit=6_000)
    ids, labelled = expected_ids(creditcard, plan)
    result: list[object] = []
    thread = threading.Thread(
        target=lambda: result.append(run_replay(settings, creditcard, plan)), daemon=True
    )
    thread.start()
    wait_for_size(settings, topics.events, 1_500, thread)
    own_kafka.stop()
    time.sleep(3)
    own_kafka.start(timeout_s=120)
    thread.join(180)

    assert not thread.is_alive()
    (summary,) = result
    assert summary.outcome == "finished", summary  # type: ignore[attr-defined]
    assert summary.events_acknowledged == 6_000  # type: ignore[attr-defined]
    events = read_topic(settings, topics.events, expect=6_000)
    assert Counter(r.key.decode() for r in events) == Counter(ids)  # each once
    labels = read_topic(settings, topics.labels, expect=len(labelled))
    assert {r.key.decode() for r in labels} == labelled
    assert "replay waiting for Kafka" in caplog.text  # not silent while it waits


def test_an_outage_past_the_delivery_timeout_fails_with_a_resume_file_that_loses_nothing(
    settings: Settings, own_kafka: LocalKafka, creditcard: Dataset, tmp_path: Path
) -> None:
    settings = on_broker(settings, own_kafka, tmp_path, delivery_timeout_s=4.0,
                         max_unacknowledged=500)  # fmt: skip
    create_domain_topics(settings, DOMAIN)
    topics = for_settings(settings, DOMAIN)
    args = ["replay", DOMAIN, "--dataset", "creditcard", "--limit", "6000", "--rate",
            "1000/s", "--label-delay-s", "2", "--label-fraction", "0.5", "--no-progress",
            "--json"]  # fmt: skip
    plan = ReplayPlan(rate_per_s=1_000, label_delay_s=2.0, label_fraction=0.5, limit=6_000)
    ids, labelled = expected_ids(creditcard, plan)

    def stop_the_broker_mid_replay() -> None:
        wait_for_size(settings, topics.events, 1_500)
        own_kafka.stop()

    stopper = threading.Thread(target=stop_the_broker_mid_replay, daemon=True)
    stopper.start()
    started = time.monotonic()
    failed = CliRunner(env=settings_env(settings)).invoke(cli, args)
    took_s = time.monotonic() - started
    stopper.join(60)

    assert failed.exit_code == 3, failed.output
    assert "Error: " in failed.stderr
    summary = json.loads(failed.stdout)
    assert summary["outcome"] == "failed"
    assert 1_500 <= summary["events_acknowledged"] < 6_000
    assert summary["labels_waiting"] > 0  # labels of acknowledged events, not yet due
    resume_file = Path(summary["resume_file"])
    assert resume_file.parent == tmp_path / "resume"
    assert took_s < 60  # the broker never came back: replay ended within its timeout

    own_kafka.start(timeout_s=120)
    resumed = CliRunner(env=settings_env(settings)).invoke(
        cli, ["replay", DOMAIN, "--resume", str(resume_file), "--no-progress", "--json"]
    )
    assert resumed.exit_code == 0, resumed.output
    after = json.loads(resumed.stdout)
    assert after["outcome"] == "finished"
    assert after["events_acknowledged_total"] == 6_000
    assert not resume_file.exists()

    events = read_topic(settings, topics.events, expect=6_000)
    counts = Counter(r.key.decode() for r in events)
    assert set(counts) == set(ids)
    # Only sends in flight at the failure may be written twice (at-least-once).
    in_flight = summary["events_sent"] - summary["events_acknowledged"]
    assert sum(counts.values()) - 6_000 <= in_flight
    labels = read_topic(settings, topics.labels, expect=len(labelled))
    assert {r.key.decode() for r in labels} == labelled


def test_sigterm_prints_the_summary_and_a_resume_goes_on_exactly_where_it_stopped(
    settings: Settings, creditcard: Dataset, tmp_path: Path
) -> None:
    settings = settings.model_copy(
        update={"replay": settings.replay.model_copy(update={"resume_dir": tmp_path})}
    )
    create_domain_topics(settings, DOMAIN)
    topics = for_settings(settings, DOMAIN)
    plan = ReplayPlan(rate_per_s=500, label_delay_s=3.0, label_fraction=0.5, limit=4_000)
    ids, labelled = expected_ids(creditcard, plan)
    child = subprocess.Popen(
        [sys.executable, "-m", "inferloop", "replay", DOMAIN, "--dataset", "creditcard",
         "--limit", "4000", "--rate", "500/s", "--label-delay-s", "3",
         "--label-fraction", "0.5", "--no-create-topics", "--no-progress", "--json"],
        env=settings_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for_size(settings, topics.events, 1_000)
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)

    assert child.returncode == 128 + signal.SIGTERM, err.decode()[-2000:]
    summary = json.loads(out)
    assert summary["outcome"] == "stopped"
    assert 1_000 <= summary["events_sent"] < 4_000
    assert summary["events_acknowledged"] == summary["events_sent"]  # flushed in the grace
    assert summary["labels_waiting"] > 0
    resume_file = Path(summary["resume_file"])
    assert resume_file.exists()

    after = run_replay(settings, creditcard, plan, resume=resume_file)

    assert after.outcome == "finished"
    assert after.events_sent == 4_000 - summary["events_sent"]
    events = read_topic(settings, topics.events, expect=4_000)
    assert Counter(r.key.decode() for r in events) == Counter(ids)  # each once
    labels = read_topic(settings, topics.labels, expect=len(labelled))
    assert Counter(r.key.decode() for r in labels) == Counter(labelled)


def test_a_stop_during_an_outage_keeps_what_was_not_acknowledged_for_the_resume(
    settings: Settings, own_kafka: LocalKafka, creditcard: Dataset, tmp_path: Path
) -> None:
    # Before: SIGTERM during an outage ended replay at once, and what it had accepted
    # but not delivered vanished without a word.
    settings = on_broker(settings, own_kafka, tmp_path, stop_grace_s=1.0)
    create_domain_topics(settings, DOMAIN)
    topics = for_settings(settings, DOMAIN)
    plan = ReplayPlan(rate_per_s=1_000, label_delay_s=2.0, label_fraction=0.5, limit=5_000)
    ids, labelled = expected_ids(creditcard, plan)
    stop = threading.Event()
    result: list[ReplaySummary] = []
    thread = threading.Thread(
        target=lambda: result.append(run_replay(settings, creditcard, plan, stop=stop)),
        daemon=True,
    )
    thread.start()
    wait_for_size(settings, topics.events, 1_500, thread)
    own_kafka.stop()
    time.sleep(1)
    stop.set()
    thread.join(30)  # the grace, not the delivery timeout (120 s)

    assert not thread.is_alive()
    (summary,) = result
    assert summary.outcome == "stopped"
    assert summary.events_acknowledged < summary.events_sent  # the outage held some back
    assert summary.resume_file is not None
    own_kafka.start(timeout_s=120)
    after = run_replay(settings, creditcard, plan, resume=Path(summary.resume_file))

    assert after.outcome == "finished"
    # Everything acknowledged is there: read to the end (sends in flight at the stop
    # are sent again, so counting records up to 5,000 could stop before the last ones).
    events = read_topic(settings, topics.events)
    assert set(r.key.decode() for r in events) == set(ids)
    labels = read_topic(settings, topics.labels)
    assert {r.key.decode() for r in labels} == labelled
