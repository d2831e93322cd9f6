"""The retrain service's metrics: each outcome counted and timed apart."""

from __future__ import annotations

from inferloop.retrain.monitoring import ServiceMetrics
from inferloop.retrain.outcome import Outcome, RunOutcome


def test_the_metrics_count_each_outcome_apart_from_the_start() -> None:
    metrics = ServiceMetrics(domains=["emails"])
    outcomes: tuple[Outcome, ...] = ("promoted", "skipped", "not_comparable")
    for outcome in outcomes:
        metrics.observe(
            RunOutcome(
                run_id=outcome,
                domain="emails",
                trigger="cli",
                outcome=outcome,
                reason="",
                started_at="2026-12-07T10:00:00.000+00:00",
                finished_at="2026-12-07T10:00:01.000+00:00",
            )
        )
    text = metrics.render().decode()
    for outcome in ("promoted", "skipped", "not_comparable"):
        assert f'inferloop_retrain_runs_total{{domain="emails",outcome="{outcome}"}} 1.0' in text
        assert (
            f'inferloop_retrain_last_run_timestamp_seconds{{domain="emails",outcome="{outcome}"}}'
            in text
        )
    assert 'inferloop_retrain_runs_total{domain="emails",outcome="rejected"} 0.0' in text
    assert 'inferloop_retrain_runs_total{domain="emails",outcome="failed"} 0.0' in text
    # Shadow-first: a winner made the challenger is an outcome of its own, there from 0.
    assert 'inferloop_retrain_runs_total{domain="emails",outcome="challenger"} 0.0' in text
