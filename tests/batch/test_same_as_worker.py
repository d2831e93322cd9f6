"""Scoring replayed events with the champion gives what the worker gave for them: the
same labels and scores, bit for bit, in predictions of the same format."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from inferloop.settings import Settings
from inferloop.topics import DomainTopics
from inferloop.worker.loop import RunLimits
from tests.batch.helpers import lines, ok, score, write_lines
from tests.helpers import read_topic
from tests.worker.conftest import Champion, WorkerThread
from tests.worker.factories import Fitted, publish_events, tx_bytes

EVENTS = 3_000
PREDICTED_AT = re.compile(rb',"predicted_at":"[^"]+"')


def test_the_champion_scores_a_replayed_set_as_the_worker_did(
    *,
    wsettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
    worker_thread: Callable[..., WorkerThread],
    tmp_path: Path,
) -> None:
    champion(model_v1)
    ids = range(EVENTS)
    publish_events(wsettings, topics.events, ids)
    worker_thread(wsettings, limits=RunLimits(max_messages=EVENTS)).join(120)
    streamed = {r.key: r.value for r in read_topic(wsettings, topics.predictions, expect=EVENTS)}
    source, out = tmp_path / "replayed.jsonl.gz", tmp_path / "rescored.jsonl"
    write_lines(source, [tx_bytes(i) for i in ids])

    ok(score(wsettings, "transactions", "--input", str(source), "--output", str(out)))

    batch = {json.loads(v)["event_id"].encode(): v for v in lines(out)}
    assert len(streamed) == len(batch) == EVENTS
    assert batch.keys() == streamed.keys()
    for key, value in batch.items():
        worker = json.loads(streamed[key])
        ours = json.loads(value)
        assert (ours["label"], ours["score"]) == (worker["label"], worker["score"]), key
        # The same bytes but for the time of prediction.
        assert PREDICTED_AT.sub(b"", value) == PREDICTED_AT.sub(b"", streamed[key]), key
    assert {json.loads(v)["label"] for v in batch.values()} == {"fraud", "legit"}
