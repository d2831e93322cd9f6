"""The console's views of the monitor's history, Kafka's throughput and the dead-letter
pages, on the real Redis and Kafka: a version's live figure over time against its
holdout figure, a drift alarm on the timeline with its time, the monitor's floor alarm
and rollback there too with their figures, predictions per second per
partition over the last minute, and dead-letter pages that read a page, not the topic."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from kafka import KafkaProducer

from inferloop.console import liveplot
from inferloop.keys import Keys
from inferloop.monitor.state import Changes, StateStore
from inferloop.ops.dlq import page
from inferloop.ops.monitor_history import DriftAlarm, HistoryPoint, KeptAction
from inferloop.topics import for_settings
from tests.console.conftest import VIEWER_TOKEN, ClientFactory, Loop


def evaluation(at: datetime, f1: float) -> dict[str, Any]:
    """A snapshot of v2 as champion, as the monitor's evaluation makes it."""
    window = {"n": 400, "positives": 50, "target": "ham_flagged",
              "f1": {"value": f1, "low": f1 - 0.04, "high": f1 + 0.04},
              "target_value": {"value": 0.01, "low": 0.0, "high": 0.02},
              "auprc": {"value": f1 + 0.05, "low": f1, "high": f1 + 0.1}}  # fmt: skip
    return {"domain": "emails", "evaluated_at": at.isoformat(), "alarms": [],
            "roles": {"champion": {"version": 2, "threshold": 0.5, "served_checked": 0,
                                 "windows": {"positives": window}}}}  # fmt: skip


def test_a_version_page_draws_its_live_figures_over_time_against_its_holdout_figures(
    client_factory: ClientFactory, loop: Loop
) -> None:
    keys = Keys(loop.settings.redis.key_prefix)
    store = StateStore(loop.registry.client, keys, "emails", 5.0, history_every_s=0.0)
    start = datetime.now(UTC) - timedelta(minutes=3)
    for i, f1 in enumerate((0.9, 0.8, 0.7)):
        store.put_status(evaluation(start + timedelta(minutes=i), f1))
    client = client_factory(VIEWER_TOKEN)
    assert 'src="/versions/emails/2/live/f1.svg"' in client.get("/versions/emails/2").text
    plot = client.get("/versions/emails/2/live/f1.svg")
    assert plot.headers["content-type"].startswith("image/svg+xml")
    line = re.search(r'class="live"[^>]* points="([^"]*)"', plot.text)
    assert line is not None
    assert len(line.group(1).split(" ")) == 3
    assert "3 evaluations, last 0.700" in plot.text
    # The test versions' holdout metrics hold AUPRC (0.9), not F1: no line without one.
    assert 'class="holdout"' not in plot.text
    auprc = client.get("/versions/emails/2/live/auprc.svg").text
    holdout = loop.registry.get_version("emails", 2).metrics["auprc"]
    assert 'class="holdout"' in auprc
    assert f"holdout {holdout:.3f}" in auprc
    assert "3 evaluations, last 0.750" in auprc
    assert 'class="interval"' in auprc
    assert "<script" not in plot.text
    target = client.get("/versions/emails/2/live/target_value.svg").text
    assert "live ham_flagged" in target
    assert "holdout's fpr" in target
    # A version the monitor never watched: the plot says so.
    assert "no live figure yet" in client.get("/versions/emails/3/live/f1.svg").text
    assert client.get("/versions/emails/2/live/nonsense.svg").status_code == 404


def test_a_drift_alarm_shows_on_the_timeline_with_its_time(
    client_factory: ClientFactory, loop: Loop
) -> None:
    keys = Keys(loop.settings.redis.key_prefix)
    store = StateStore(loop.registry.client, keys, "emails", 5.0)
    store.acquire()
    at = datetime(2026, 12, 7, 18, 30, tzinfo=UTC)
    alarm = DriftAlarm(at.timestamp(), "score", 31.25, 25.0, "both", 812, 2)
    store.commit(Changes(offsets={"labels:0": 3}, alarms=[alarm]))
    client = client_factory(VIEWER_TOKEN)
    text = client.get("/timeline/emails").text
    row = ("<tr><td>2026-12-07 18:30:00</td><td>score</td><td>31.25</td><td>25.0</td>"
           "<td>both</td><td>812</td><td>v2</td></tr>")  # fmt: skip
    assert row in text
    plot = client.get("/timeline/emails/plot.svg").text
    assert "drift (score) on v2 at 2026-12-07T18:30:00+00:00: statistic 31.25" in plot


def test_the_monitors_floor_alarm_and_rollback_show_on_the_timeline_with_their_figures(
    client_factory: ClientFactory, loop: Loop
) -> None:
    keys = Keys(loop.settings.redis.key_prefix)
    store = StateStore(loop.registry.client, keys, "emails", 5.0)
    store.acquire()
    at = datetime(2026, 12, 7, 19, 0, tzinfo=UTC).timestamp()
    floor = KeptAction(at, "floor", "raised", 2, 2, None, "target_value", 0.05, 0.02, 400,
                       {"breached": ["target_value"], "low": 0.04, "high": 0.06})  # fmt: skip
    rollback = KeptAction(at + 60, "rollback", "done", 2, 2, 1, "e_loss", 31.5, 20.0, 640,
                          {"decision": "probation", "e_loss": 31.5, "e_win": 0.2})  # fmt: skip
    store.commit(Changes(detectors={"policy": {}}, actions=[floor, rollback]))
    client = client_factory(VIEWER_TOKEN)
    text = client.get("/timeline/emails").text
    assert (
        '<tr class="kept-floor"><td>2026-12-07 19:00:00</td><td>floor</td><td>raised</td>'
        "<td>v2</td><td>v2</td><td></td><td>target_value</td><td>0.05</td><td>0.02</td>"
        "<td>400</td>"
    ) in text
    assert (
        '<tr class="kept-rollback"><td>2026-12-07 19:01:00</td><td>rollback</td><td>done</td>'
        "<td>v2</td><td>v2</td><td>v1</td><td>e_loss</td><td>31.5</td><td>20</td><td>640</td>"
    ) in text
    assert '"e_win": 0.2}</td>' in text  # the evidence (tojson: HTML-safe JSON)
    # Newest first.
    assert text.index("kept-rollback") < text.index("kept-floor")
    plot = client.get("/timeline/emails/plot.svg").text
    assert (
        "floor (raised) on v2 at 2026-12-07T19:00:00+00:00: target_value 0.05 against 0.02 "
        "on 400 labelled events"
    ) in plot


def test_the_overview_shows_predictions_per_second_per_partition_over_the_last_minute(
    client_factory: ClientFactory, loop: Loop
) -> None:
    topic = for_settings(loop.settings, "emails").predictions
    producer = KafkaProducer(bootstrap_servers=loop.settings.kafka.bootstrap_servers)
    ten_minutes_ago = int((time.time() - 600) * 1000)
    # The minute is the one before the read, which a loaded machine may delay: these are
    # stamped 5 minutes ahead (the broker takes up to an hour ahead), so they stay in it
    # however late the read comes, short of 6 minutes.
    ahead = int((time.time() + 300) * 1000)
    for _ in range(120):  # before the minute: not counted
        producer.send(topic, value=b"{}", partition=0, timestamp_ms=ten_minutes_ago)
    for partition, n in ((0, 30), (1, 6)):
        for _ in range(n):
            producer.send(topic, value=b"{}", partition=partition, timestamp_ms=ahead)
    producer.flush()
    producer.close()
    text = client_factory(VIEWER_TOKEN).get("/").text
    rates = re.findall(r'<td class="rate">([^<]*)</td>', text)
    assert rates[:4] == ["0.50", "0.10", "0.00", "0.00"]
    assert '<th class="rate">0.60</th>' in text


def letters(loop: Loop, n: int) -> None:
    """``n`` dead letters on partition 0, reasons alternating."""
    topic = for_settings(loop.settings, "emails").dlq
    producer = KafkaProducer(bootstrap_servers=loop.settings.kafka.bootstrap_servers)
    for i in range(n):
        reason = b"invalid_json" if i % 3 else b"schema"
        producer.send(topic, key=f"k{i}".encode(), value=f"letter {i}".encode(),
                      headers=[("dlq.reason", reason)], partition=0)  # fmt: skip
    producer.flush()
    producer.close()


def test_a_dead_letter_page_of_a_large_topic_reads_one_page(
    client_factory: ClientFactory, loop: Loop
) -> None:
    letters(loop, 1500)  # offsets 1..1500 of partition 0 (0 is the hostile letter)
    first = page(loop.settings, "emails", per_page=50)
    assert first.read == 50
    assert first.total == 1501
    assert [x.dlq_offset for x in first.letters] == list(range(1500, 1450, -1))
    assert first.older == {0: 1451, 1: 0, 2: 0, 3: 0}
    second = page(loop.settings, "emails", before=first.older, per_page=50)
    assert [x.dlq_offset for x in second.letters] == list(range(1450, 1400, -1))
    schema = page(loop.settings, "emails", per_page=50, reason="schema")
    assert {x.reason for x in schema.letters} == {"schema"}
    assert len(schema.letters) == 50
    assert schema.read <= 10 * 50
    client = client_factory(VIEWER_TOKEN)
    text = client.get("/dlq/emails").text
    assert "This page read 50 records" in text
    assert "1501 records in" in text
    older = re.search(r'<a id="older" href="([^"]*)"', text)
    assert older is not None
    following = client.get(older.group(1).replace("&amp;", "&")).text
    assert "/dlq/emails/0:1450" in following
    assert "/dlq/emails/0:1451" not in following
    assert "letter 699" in client.get("/dlq/emails/0:700").text
    assert client.get("/dlq/emails/0:99999").status_code == 404


def test_paging_back_shows_every_letter_of_every_partition_once(loop: Loop) -> None:
    topic = for_settings(loop.settings, "emails").dlq
    producer = KafkaProducer(bootstrap_servers=loop.settings.kafka.bootstrap_servers)
    for i in range(90):
        headers = [("dlq.reason", b"schema" if i % 4 else b"invalid_json"),
                   ("dlq.time", f"2026-12-07T18:{i // 60:02d}:{i % 60:02d}".encode())]  # fmt: skip
        producer.send(topic, value=f"{i}".encode(), headers=headers, partition=(i * 7) % 3 + 1)
    producer.flush()
    producer.close()
    for reason, expected in ((None, 91), ("schema", 67)):
        seen, before, pages = [], None, 0
        while True:
            shown = page(loop.settings, "emails", before=before, per_page=7, reason=reason)
            seen += [x.coordinates for x in shown.letters]
            pages += 1
            if shown.older is None:
                break
            before = shown.older
        assert len(seen) == len(set(seen)) == expected, reason
        assert pages <= expected // 7 + 2


def test_a_small_figure_is_drawn_on_an_axis_that_fits_it() -> None:
    points = [
        HistoryPoint(
            1000.0 + 30 * i,
            "champion",
            "ham_flagged",
            {"positives": {"target_value": [0.01, 0.0, 0.02]}},
        )
        for i in range(3)
    ]
    drawn = liveplot.svg("emails v2", points, "target_value", 0.008)
    ticks = re.findall(r'text-anchor="end">([0-9.]+)</text>', drawn)
    assert ticks == ["0", "0.025", "0.05"]
    assert "holdout 0.008" in drawn
