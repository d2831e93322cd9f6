"""The demo on the test session's Kafka and Redis, on a small slice of the SMS data: the
same code path as ``inferloop demo`` (real retrain job for v1, worker and retrain-service
processes, replay with delayed labels, hostile messages, scheduled retraining, an
operator's weakened candidate), small enough for CI."""

from __future__ import annotations

import io
import json
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

STREAMED = 0.35 - 0.15  # of the SMS collection's 5,574 messages


@pytest.fixture
def plan(tmp_path: Path, settings: Settings) -> Iterator[DemoPlan]:
    plan = DemoPlan(
        run_id=f"t{new_run_id()}",
        out_dir=tmp_path / "demo",
        domains=(
            DomainPlan(
                "emails", "sms", seed_end=0.15, stream_end=0.35, rate_per_s=400.0, schedule="5s"
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
    streamed = int(0.35 * 5574) - int(0.15 * 5574)
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
    (weakened,) = [v for v in versions if v["trigger"] == "operator"]
    assert weakened["status"] == "rejected", weakened
    assert any(v["trigger"] == "schedule" for v in versions)
    # What the user is told: the summary, where the plots are, and they are there.
    for path in [report.summary_json, report.summary_md, *report.plots]:
        assert path.stat().st_size > 0, path
    assert {p.suffix for p in report.plots} == {".png"}
    assert json.loads(report.summary_json.read_text())["emails"]["lost"] == 0
    text = out.getvalue()
    assert "emails: retrain emails" in text
    assert "promoted, v1" in text
