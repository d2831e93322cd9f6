"""The service's Prometheus metrics and its HTTP endpoint (``/metrics``, ``/healthz``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from inferloop.httpserve import BackgroundHTTPServer, Reply
from inferloop.retrain.errors import RetrainError
from inferloop.retrain.outcome import OUTCOMES, RunOutcome
from inferloop.settings import DOMAINS

log = logging.getLogger(__name__)

# Runs whose gate compared with the champion: they know whether it is below the floor.
DECIDED = frozenset({"promoted", "challenger", "rejected"})

STEP_BUCKETS_S = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class ServiceMetrics:
    """Runs by outcome, durations by step, rows read, last run of each outcome, next run."""

    def __init__(
        self, registry: CollectorRegistry | None = None, domains: Sequence[str] = DOMAINS
    ) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.runs = Counter(
            "inferloop_retrain_runs_total",
            "Retrain runs by outcome (promoted, rejected, not_comparable, skipped, failed, ...)",
            ["domain", "outcome"],
            registry=r,
        )
        self.last_run = Gauge(
            "inferloop_retrain_last_run_timestamp_seconds",
            "When the last run of each outcome finished",
            ["domain", "outcome"],
            registry=r,
        )
        # Every outcome's series exists from the start, at 0: a rate or an alert on
        # outcome="not_comparable" works before the first one happens.
        for domain in domains:
            for outcome in OUTCOMES:
                self.runs.labels(domain, outcome)
        self.firings = Counter(
            "inferloop_retrain_firings_total",
            "Scheduled firings: run here, claimed by another instance, "
            "missed (later than the grace time) or skipped (still running)",
            ["domain", "result"],
            registry=r,
        )
        self.step_seconds = Histogram(
            "inferloop_retrain_step_seconds",
            "Duration of each step of a run",
            ["domain", "step"],
            buckets=STEP_BUCKETS_S,
            registry=r,
        )
        self.run_seconds = Histogram(
            "inferloop_retrain_run_seconds",
            "Duration of a run",
            ["domain"],
            buckets=STEP_BUCKETS_S,
            registry=r,
        )
        self.rows_read = Counter(
            "inferloop_retrain_rows_read_total",
            "Labelled records read from Kafka",
            ["domain"],
            registry=r,
        )
        self.last_success = Gauge(
            "inferloop_retrain_last_success_timestamp_seconds",
            "When a run last reached a decision or rightly skipped (the service is alive); "
            "inferloop_retrain_last_run_timestamp_seconds tells the outcomes apart",
            ["domain"],
            registry=r,
        )
        self.next_run = Gauge(
            "inferloop_retrain_next_run_timestamp_seconds",
            "When the next scheduled run is due",
            ["domain"],
            registry=r,
        )
        self.below_floor = Gauge(
            "inferloop_retrain_champion_below_floor",
            "1 when the last decided run left a champion below the domain's floor",
            ["domain"],
            registry=r,
        )
        self.running = Gauge(
            "inferloop_retrain_running", "Runs in progress", ["domain"], registry=r
        )

    def observe(self, outcome: RunOutcome) -> None:
        """Count a finished run."""
        self.runs.labels(outcome.domain, outcome.outcome).inc()
        self.run_seconds.labels(outcome.domain).observe(outcome.duration_s)
        for step, seconds in outcome.durations_s.items():
            self.step_seconds.labels(outcome.domain, step).observe(seconds)
        self.rows_read.labels(outcome.domain).inc(outcome.records_read)
        if outcome.outcome in DECIDED:
            self.below_floor.labels(outcome.domain).set(int(outcome.champion_below_floor))
        if not outcome.finished_at:
            return
        finished = datetime.fromisoformat(outcome.finished_at).timestamp()
        self.last_run.labels(outcome.domain, outcome.outcome).set(finished)
        if outcome.successful:
            self.last_success.labels(outcome.domain).set(finished)

    def set_next_run(self, domain: str, when: datetime | None) -> None:
        """Record the next scheduled run (NaN-free: 0 when there is none)."""
        self.next_run.labels(domain).set(when.timestamp() if when else 0)

    def render(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)


Health = Callable[[], tuple[bool, dict[str, Any]]]


def monitoring_server(
    metrics: ServiceMetrics, health: Health, host: str, port: int
) -> BackgroundHTTPServer:
    """``/metrics`` and ``/healthz`` on ``host:port``, not yet started."""

    def healthz() -> Reply:
        ok, body = health()
        return 200 if ok else 503, "application/json", json.dumps(body, default=str).encode()

    routes = {
        "/metrics": lambda: (200, CONTENT_TYPE_LATEST, metrics.render()),
        "/healthz": healthz,
    }
    try:
        return BackgroundHTTPServer(routes, host, port, name="retrain-http")
    except OSError as exc:
        raise RetrainError(
            f"cannot serve metrics on {host}:{port} (INFERLOOP_RETRAIN__METRICS_PORT): "
            f"{exc.strerror or exc}"
        ) from exc
