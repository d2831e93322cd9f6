"""Per-event figures are recorded a batch at a time and read back like a histogram."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from prometheus_client import generate_latest

from inferloop.worker.errors import WorkerConfigError
from inferloop.worker.health import HealthState, health_server
from inferloop.worker.metrics import WorkerMetrics


def sample(metrics: WorkerMetrics, name: str, **labels: str) -> float | None:
    value = metrics.registry.get_sample_value(name, labels)
    return None if value is None else float(value)


def test_bulk_histogram_counts_every_value_in_its_bucket() -> None:
    metrics = WorkerMetrics("transactions")
    metrics.end_to_end.observe_many(np.array([0.0005, 0.003, 0.003, 7.0, 1000.0]))

    name = "inferloop_worker_end_to_end_seconds"
    assert sample(metrics, name + "_bucket", domain="transactions", le="0.001") == 1
    assert sample(metrics, name + "_bucket", domain="transactions", le="0.005") == 3
    assert sample(metrics, name + "_bucket", domain="transactions", le="10.0") == 4
    assert sample(metrics, name + "_bucket", domain="transactions", le="+Inf") == 5
    assert sample(metrics, name + "_count", domain="transactions") == 5
    assert sample(metrics, name + "_sum", domain="transactions") == 1007.0065
    assert b"inferloop_worker_end_to_end_seconds_bucket" in generate_latest(metrics.registry)


def test_predictions_by_label_and_version_and_the_positive_rate() -> None:
    metrics = WorkerMetrics("emails")
    metrics.count_predictions(3, positives=1, total=4, names=("ham", "spam"))
    metrics.count_predictions(3, positives=3, total=4, names=("ham", "spam"))

    total = "inferloop_worker_predictions_total"
    assert sample(metrics, total, domain="emails", label="spam", version="3") == 4
    assert sample(metrics, total, domain="emails", label="ham", version="3") == 4
    assert sample(metrics, "inferloop_worker_positive_ratio", domain="emails", version="3") == 0.5


def test_a_metrics_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        health = HealthState("transactions", max_loop_gap_s=30.0)
        with pytest.raises(WorkerConfigError, match=f"127.0.0.1:{port}"):
            health_server("127.0.0.1", port, WorkerMetrics("transactions"), health)
