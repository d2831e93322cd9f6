"""Prometheus metrics of one monitor process, in a registry of its own.

Per-version figures carry a ``role`` label (champion, challenger, previous), never the
version itself, so their number of series stays fixed as versions come and go; the
version a role holds is on ``inferloop_monitor_model_info``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BATCH_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class MonitorMetrics:
    """Every metric the monitor exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.labels = Counter(
            "inferloop_monitor_labels", "Labelled events taken into the window",
            ["domain"], registry=r,
        )  # fmt: skip
        self.duplicates = Counter(
            "inferloop_monitor_duplicate_labels",
            "Labels of an event already in the window, counted once", ["domain"], registry=r,
        )  # fmt: skip
        self.rejects = Counter(
            "inferloop_monitor_rejected_labels", "Label records that are not valid labelled "
            "events", ["domain"], registry=r,
        )  # fmt: skip
        self.prediction_rejects = Counter(
            "inferloop_monitor_rejected_predictions", "Prediction records that could not be "
            "read (skipped)", ["domain"], registry=r,
        )  # fmt: skip
        self.predictions = Counter(
            "inferloop_monitor_predictions", "Predictions read, by the role of the version "
            "that served them (other: a version no role holds)", ["domain", "role"], registry=r,
        )  # fmt: skip
        self.served_checked = Counter(
            "inferloop_monitor_served_checks", "Sampled events whose served score was compared "
            "with the monitor's own", ["domain"], registry=r,
        )  # fmt: skip
        self.served_mismatches = Counter(
            "inferloop_monitor_served_mismatches", "Sampled events whose served score the "
            "monitor's re-scoring did not reproduce", ["domain"], registry=r,
        )  # fmt: skip
        self.model_info = Gauge(
            "inferloop_monitor_model_info", "1 for the version each role holds",
            ["domain", "role", "version"], registry=r,
        )  # fmt: skip
        self.figure = Gauge(
            "inferloop_monitor_figure", "A live figure of a role's version on a window, with "
            "its bootstrap interval (bound: value, low, high)",
            ["domain", "role", "window", "figure", "bound"], registry=r,
        )  # fmt: skip
        self.window_events = Gauge(
            "inferloop_monitor_window_events", "Labelled events in a window",
            ["domain", "window"], registry=r,
        )  # fmt: skip
        self.window_positives = Gauge(
            "inferloop_monitor_window_positives", "Positives in a window",
            ["domain", "window"], registry=r,
        )  # fmt: skip
        self.labelled_share = Gauge(
            "inferloop_monitor_labelled_ratio", "Labelled events over predictions, per class "
            "the role's version predicted", ["domain", "role", "predicted"], registry=r,
        )  # fmt: skip
        self.label_delay = Gauge(
            "inferloop_monitor_label_delay_seconds", "Label delay over the window",
            ["domain", "quantile"], registry=r,
        )  # fmt: skip
        self.batch_seconds = Histogram(
            "inferloop_monitor_batch_seconds", "Time to score and store one batch",
            ["domain"], buckets=BATCH_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.alarms = Counter(
            "inferloop_monitor_alarms", "Alarms raised, by kind", ["domain", "kind"], registry=r
        )
        self.actions = Counter(
            "inferloop_monitor_actions", "Actions taken (rollback, retrain trigger), by outcome",
            ["domain", "action", "outcome"], registry=r,
        )  # fmt: skip
        self.redis_up = Gauge(
            "inferloop_monitor_redis_up", "1 while Redis answers", ["domain"], registry=r
        )
