"""Feedback-style labels (a report for every flagged event, few for the rest) are
reported with their labelled share per predicted class, by ``inferloop monitor status``."""

from __future__ import annotations

import json
from collections.abc import Callable

from click.testing import CliRunner

from inferloop.cli import cli
from inferloop.settings import Settings
from inferloop.topics import DomainTopics
from tests.helpers import settings_env
from tests.monitor.conftest import MonitorThread, publish_labels
from tests.monitor.test_rescoring import serve
from tests.worker.conftest import Champion, WorkerThread
from tests.worker.factories import Fitted, predictions, publish_events


def test_feedback_labels_are_reported_with_their_labelled_share_per_predicted_class(
    *,
    msettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
    worker_thread: Callable[..., WorkerThread],
    monitor_thread: Callable[..., MonitorThread],
) -> None:
    champion(model_v1)
    ids = list(range(600))
    publish_events(msettings, topics.events, ids)
    serve(msettings, worker_thread, len(ids))
    served = {p.event_id: p.label for p in predictions(msettings, topics.predictions, expect=600)}
    flagged = [i for i in ids if served[f"tx-{i}"] == "fraud"]
    passed = [i for i in ids if served[f"tx-{i}"] == "legit"]
    appealed = passed[::10]
    assert flagged
    assert appealed
    # Every flagged event is reported; one passed event in ten comes back.
    publish_labels(msettings, topics.labels, flagged + appealed)

    monitor_thread(msettings, until_idle_s=3.0).join(90)

    result = CliRunner(env=settings_env(msettings)).invoke(
        cli, ["monitor", "status", "transactions", "--json"]
    )
    assert result.exit_code == 0, result.output
    shares = json.loads(result.output)["roles"]["champion"]["labelled_share"]
    assert shares["fraud"] == {"labelled": len(flagged), "predicted": len(flagged), "share": 1.0}
    assert shares["legit"]["labelled"] == len(appealed)
    assert shares["legit"]["predicted"] == len(passed)
    assert shares["legit"]["share"] == len(appealed) / len(passed)
    table = CliRunner(env=settings_env(msettings)).invoke(
        cli, ["monitor", "status", "transactions"]
    )
    assert table.exit_code == 0, table.output
    assert "labelled share per predicted class" in table.output
    assert "champion" in table.output
    fraud_row = next(line for line in table.output.splitlines() if " fraud " in line)
    assert f"{len(flagged)}" in fraud_row
    assert "1.0" in fraud_row
