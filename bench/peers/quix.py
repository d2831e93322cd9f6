"""The peer: an idiomatic Quix Streams app that scores the same model, one row at a time.

This is how the Quix Streams documentation writes a model-serving app: a
StreamingDataFrame that applies a function to each message's (JSON-decoded) value and
sends the result to an output topic. Here the function validates the value with the
domain's event schema, builds its row with the domain's ``to_rows`` and calls the same
champion pipeline, per row. It needs the optional ``bench`` extra
(``uv sync --extra bench``); the product never imports it.

The rate counts from the first row scored to the last one (Quix's start-up, group
join and final commit excluded: generous to the peer).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from threadpoolctl import threadpool_limits

from bench.peers.baselines import LoopResult
from inferloop.domains import get_domain
from inferloop.settings import KafkaSettings


def quix_peer(
    kafka: KafkaSettings,
    source: str,
    sink: str,
    count: int,
    *,
    domain: str,
    pipeline: Any,
    threshold: float,
    state_dir: str,
) -> LoopResult:
    """Run the Quix app until it has produced ``count`` outputs."""
    # The optional `bench` extra: imported only when the peer runs.
    from quixstreams import Application  # noqa: PLC0415

    spec = get_domain(domain)
    negative, positive = spec.label_names
    seen: list[float] = []

    def score_one(value: dict[str, Any]) -> dict[str, Any]:
        event = spec.event_model.model_validate(value, strict=False)
        score = float(pipeline.predict_proba(spec.to_rows([event]))[0, 1])
        seen.append(time.perf_counter())
        return {
            "event_id": event.id,
            "domain": domain,
            "label": positive if score >= threshold else negative,
            "score": score,
            "threshold": threshold,
            "event_time": event.event_time.isoformat(),
            "predicted_at": datetime.now(UTC).isoformat(),
        }

    app = Application(
        broker_address=kafka.bootstrap_servers,
        state_dir=state_dir,
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
    # One scoring thread, as each worker process has (one process per core).
    with threadpool_limits(1):
        app.run(count=count, timeout=120, collect=False)
    if len(seen) < 2:
        return LoopResult("Quix Streams (per row)", 0, 0.0)
    return LoopResult("Quix Streams (per row)", len(seen) - 1, seen[-1] - seen[0])
