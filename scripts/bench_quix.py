"""The peer: an idiomatic Quix Streams app that scores the same model, one row at a time.

This is how the Quix Streams documentation writes a model-serving app: a
StreamingDataFrame that applies a function to each message's value and sends the
result to an output topic. It needs the optional ``bench`` extra
(``uv sync --extra bench``); the product never imports it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from bench_baselines import LoopResult

from inferloop.settings import KafkaSettings


def quix_peer(
    kafka: KafkaSettings,
    source: str,
    sink: str,
    count: int,
    score_one: Callable[[dict[str, Any]], dict[str, Any]],
) -> LoopResult:
    """Run the Quix app until it has produced ``count`` outputs."""
    from quixstreams import Application

    app = Application(
        broker_address=kafka.bootstrap_servers,
        consumer_group=f"bench-quix-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        processing_guarantee="at-least-once",
        auto_create_topics=False,
        use_changelog_topics=False,
    )
    events = app.topic(source, value_deserializer="json")
    predictions = app.topic(sink, value_serializer="json")
    sdf = app.dataframe(events)
    sdf = sdf.apply(score_one)
    sdf.to_topic(predictions)
    started = time.perf_counter()
    # Quix counts from its first rebalance; the start-up is a second or two at most.
    app.run(count=count, timeout=60, collect=False)
    return LoopResult("Quix Streams (per row)", count, time.perf_counter() - started)
