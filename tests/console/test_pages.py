"""What the pages show and do beyond the security rules: live figures against the floors,
a redrive through the page."""

from __future__ import annotations

import json
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from redis.typing import EncodableT, FieldT

from inferloop.topics import for_settings
from tests.console.conftest import (
    HOSTILE,
    OPERATOR_TOKEN,
    VIEWER_TOKEN,
    ClientFactory,
    Loop,
    csrf_of,
)


def _interval(value: float) -> dict[str, float]:
    return {"value": value, "low": value - 0.01, "high": value + 0.01}


def test_the_overview_shows_the_champions_live_figures_against_its_floor(
    client_factory: ClientFactory, loop: Loop
) -> None:
    window = {"n": 900, "positives": 120, "target": "ham_flagged", "f1": _interval(0.91),
              "target_value": _interval(0.05), "auprc": _interval(0.95)}  # fmt: skip
    # F1 0.69 over the last 50 positives, its interval over the 0.70 floor; the hour's
    # labels put the whole interval under it, as the monitor judges its alarm.
    recent = {**window, "f1": {"value": 0.69, "low": 0.55, "high": 0.80}}
    hour = {**window, "f1": {"value": 0.62, "low": 0.55, "high": 0.68}}
    # The monitor's verdict of that evaluation (``floor_breach``), as its policy gives it.
    on_positives = {"version": 2, "window": "positives", "breached": {"target_value": {}}}
    on_time = {"version": 2, "window": "time", "breached": {"f1": {}}}
    key = loop.registry.keys.monitor_status("emails")

    def overview(windows: dict[str, Any], breach: dict[str, Any] | None) -> str:
        status = {"evaluated_at": "2026-12-07T17:00:00+00:00",
                  "alarms": ["champion below floor"], "floor_breach": breach,
                  "roles": {"champion": {"version": 2, "windows": windows}}}  # fmt: skip
        loop.registry.client.set(key, json.dumps(status))
        return str(client_factory(VIEWER_TOKEN).get("/").text)

    page = overview({"positives": window}, on_positives)
    # emails' default floor: ham flagged at most 0.02; the champion flags 0.05.
    assert (
        "<td>ham_flagged</td><td>0.050</td><td>&lt;= 0.02</td><td>BELOW (window by positives)</td>"
        in page
    )
    assert "<td>f1</td><td>0.910</td><td>&gt;= 0.7</td><td>holds</td>" in page
    assert "f1 0.910 [0.900, 0.920]" in page
    assert "champion below floor" in page
    page = overview({"positives": recent}, None)
    assert "<td>f1</td><td>0.690</td><td>&gt;= 0.7</td><td>below, without evidence yet</td>" in page
    page = overview({"positives": recent, "time": hour}, on_time)
    assert "<td>f1</td><td>0.690</td><td>&gt;= 0.7</td><td>BELOW (window by time)</td>" in page
    # A breach of an earlier champion is not this one's.
    page = overview({"positives": recent, "time": hour}, {**on_time, "version": 1})
    assert "<td>f1</td><td>0.690</td><td>&gt;= 0.7</td><td>below, without evidence yet</td>" in page
    overview({"positives": window}, on_positives)
    versions = client_factory(VIEWER_TOKEN).get("/versions/emails").text
    assert "ham_flagged 0.050 [0.040, 0.060]" in versions


def test_an_operator_redrives_a_dead_letter_to_its_source_topic(
    client_factory: ClientFactory, loop: Loop
) -> None:
    client = client_factory(OPERATOR_TOKEN)
    csrf = csrf_of(client, "/dlq/emails")
    form = {"csrf": csrf, "reason": "parser fixed", "confirm": "yes", "letter": "0:0"}
    answer = client.post("/actions/redrive/emails", data=form)
    assert answer.status_code == 200, answer.text
    assert "1 letters redriven, 0 skipped" in answer.text
    topic = for_settings(loop.settings, "emails").events
    consumer = KafkaConsumer(bootstrap_servers=loop.settings.kafka.bootstrap_servers)
    partitions = [TopicPartition(topic, p) for p in range(loop.settings.topics.partitions)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    records = [r for batch in consumer.poll(timeout_ms=10_000).values() for r in batch]
    consumer.close()
    assert [(r.key, r.value) for r in records] == [(b"k1", HOSTILE.encode())]


def test_the_timeline_plot_marks_each_promotion(client_factory: ClientFactory) -> None:
    client = client_factory(VIEWER_TOKEN)
    plot = client.get("/timeline/emails/plot.svg")
    assert plot.headers["content-type"].startswith("image/svg+xml")
    legend = 7  # promote, rollback, reject, drift, floor, probation, trigger
    assert plot.text.count("<circle") - legend == 2
    assert "<title>promote v1 at" in plot.text
    assert "<title>promote v2 at" in plot.text
    assert "<script" not in plot.text


def test_a_version_page_counts_its_served_predictions(
    client_factory: ClientFactory, loop: Loop
) -> None:
    counts: dict[FieldT, EncodableT] = {
        "predicted:2:ham": 40,
        "predicted:2:spam": 2,
        "predicted:1:ham": 9,
        "labels": 5,
    }
    loop.registry.client.hset(loop.registry.keys.monitor_counts("emails"), mapping=counts)
    page = client_factory(VIEWER_TOKEN).get("/versions/emails/2").text
    assert '<p id="predictions">42 (ham: 40, spam: 2)</p>' in page
