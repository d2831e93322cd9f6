"""The demo on the test session's Kafka and Redis, on a small slice of the SMS data: the
same code path as ``inferloop demo`` (real retrain job for v1, worker, retrain-service and
monitor processes, replay with delayed labels, hostile messages, scheduled retraining, an
operator's weakened candidate, a worse version promoted by hand and rolled back by the
monitor), small enough for CI."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from rich.console import Console

from inferloop.demo.plan import DemoPlan, DomainPlan, new_run_id
from inferloop.demo.run import HOSTILE, Demo
from inferloop.settings import Settings
from tests.helpers import delete_topics_with_prefix

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SMS = 5574  # messages in the SMS collection
SEED_END, STREAM_END = 0.15, 0.75


@pytest.fixture
def plan(tmp_path: Path, settings: Settings) -> Iterator[DemoPlan]:
    plan = DemoPlan(
        run_id=f"t{new_run_id()}",
        out_dir=tmp_path / "demo",
        domains=(
            # About 130 s of stream; the operator's part begins a tenth in (its weakened
            # run took 80 s on a loaded 2-core machine), leaving the monitor a minute of
            # stream to catch the version promoted by hand (it took 5 s, 124 labelled).
            DomainPlan(
                "emails",
                "sms",
                seed_end=SEED_END,
                stream_end=STREAM_END,
                rate_per_s=25.0,
                schedule="5s",
                operator_at=0.1,
            ),
        ),
        label_delay_s=1.0,
        timeout_s=420.0,
        # The SMS collection is easy: v1 on 800 messages is as good as v2, so the gate
        # may well refuse the scheduled candidate. The full demo shows a promotion.
        await_promotion=False,
    )
    yield plan
    delete_topics_with_prefix(settings, plan.topic_prefix)
    with redis.Redis.from_url(settings.redis.url) as client:
        keys = list(client.scan_iter(match=f"{plan.key_prefix}:*", count=1000))
        if keys:
            client.delete(*keys)


def test_the_demo_runs_the_whole_lifecycle_and_accounts_for_every_event(
    settings: Settings, plan: DemoPlan
) -> None:
    out = io.StringIO()
    console = Console(file=out, width=140)

    report = Demo(settings, plan, console, local_services=False).run()

    outcome = report.outcomes["emails"]
    streamed = int(STREAM_END * SMS) - int(SEED_END * SMS)
    assert outcome.replayed == streamed + len(HOSTILE)
    assert outcome.lost == 0
    assert outcome.predicted_ids == streamed
    assert sum(outcome.dead_letters.values()) == len(HOSTILE)
    assert "not_json" in outcome.dead_letters
    # v1 came from the real retrain job and scored the stream; its quality was measured
    # on the labels that came back.
    assert 1 in outcome.by_version
    v1 = next(q for q in outcome.quality if q.version == 1)
    assert v1.labelled > 0.9 * outcome.by_version[1] - len(HOSTILE)
    assert v1.f1 is not None
    assert v1.f1 > 0.8
    assert outcome.latency_ms["p50"] > 0
    # The schedule made a candidate after the stream, and the operator's weakened one
    # was refused by the gate: every version has a decision.
    versions = report.versions["emails"]
    assert len(versions) >= 3
    assert versions[0]["status"] in ("champion", "archived")
    (weakened,) = [v for v in versions if v["trigger"] == "cli"]
    assert weakened["status"] == "rejected", weakened
    assert any(v["trigger"] == "schedule" for v in versions)
    # The version promoted by hand was rolled back by the monitor, within 500 labelled
    # events, to the champion it replaced; the summary says so from the monitor's own
    # records, with its live figures for each version it watched.
    (worse,) = [v for v in versions if v["trigger"] == "operator-by-hand"]
    assert worse["status"] in ("rolled_back", "rejected"), worse
    live = report.live["emails"]
    rollback = live["rollback"]
    assert rollback is not None, live
    assert rollback["version"] == worse["version"]
    assert rollback["rolled_back_by"] == "monitor"
    assert 0 < rollback["labelled"] <= 500
    assert rollback["positives"] > 0
    assert rollback["seconds"] > 0
    assert rollback["evidence"]["outcome"] == "loss"
    measured = {row["version"]: row for row in live["versions"]}
    assert worse["version"] in measured
    assert measured[worse["version"]]["labelled"] > 0
    assert measured[worse["version"]]["f1"] is not None
    assert rollback["to_version"] in measured
    summary = json.loads(report.summary_json.read_text())["emails"]
    assert summary["monitor"]["rollback"]["version"] == worse["version"]
    assert "rolled back to" in report.summary_md.read_text()
    # What the user is told: the summary, where the plots are, and they are there.
    for path in [report.summary_json, report.summary_md, *report.plots]:
        assert path.stat().st_size > 0, path
    assert {p.suffix for p in report.plots} == {".png"}
    assert json.loads(report.summary_json.read_text())["emails"]["lost"] == 0
    text = out.getvalue()
    assert "emails: retrain emails" in text
    assert "promoted, v1" in text
    # The console's address and token were printed, and it served until the demo ended.
    assert re.search(r"console: http://127\.0\.0\.1:\d+/ \(log in with the token \S+\)", text)
    assert "serving http://127.0.0.1:" in (plan.out_dir / "logs" / "console.log").read_text()
