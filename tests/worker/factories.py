"""Events, real fitted pipelines and readers for the worker's tests."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from inferloop.connections import make_producer
from inferloop.domains import get_domain
from inferloop.domains.schemas import Prediction
from inferloop.settings import Settings
from tests.helpers import read_topic

# An amount no synthetic event has: the poisoned pipeline raises on it.
POISON_AMOUNT = 666.25


def tx_event(i: int, **changes: Any) -> dict[str, Any]:
    """A valid transaction event, its features drawn from a generator seeded by ``i``."""
    rng = np.random.default_rng(i)
    features = rng.normal(size=28)
    event: dict[str, Any] = {
        "id": f"tx-{i}",
        "event_time": f"2024-03-01T10:{i % 60:02d}:{(i // 60) % 60:02d}+01:00",
        "schema_version": 1,
        "amount": round(float(abs(rng.normal(60, 40))), 2),
    }
    event.update({f"v{k}": float(v) for k, v in enumerate(features, start=1)})
    event.update(changes)
    return event


def tx_bytes(i: int, **changes: Any) -> bytes:
    """``tx_event`` as the JSON bytes a producer sends."""
    return json.dumps(tx_event(i, **changes)).encode()


@dataclass(frozen=True)
class Fitted:
    """A real fitted transactions pipeline and the threshold it is registered with."""

    pipeline: Pipeline
    threshold: float


def train(seed: int, *, iterations: int = 25, rows: int = 3000) -> Fitted:
    """The transactions domain's own pipeline, fewer iterations, on synthetic rows whose
    label depends on v1 and v2."""
    spec = get_domain("transactions")
    events = [tx_event(seed * 1_000_000 + i) for i in range(rows)]
    x = np.array([[e[f"v{k}"] for k in range(1, 29)] + [e["amount"]] for e in events])
    y = ((x[:, 0] + 0.5 * x[:, 1]) > 1.2).astype(np.int8)
    pipeline = spec.build_pipeline(seed)
    pipeline.set_params(model__max_iter=iterations)
    pipeline.fit(x, y)
    return Fitted(pipeline, 0.5)


def refuse_poison(rows: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Pass rows through, but raise on any row holding the poison amount."""
    if np.any(rows[:, -1] == POISON_AMOUNT):
        raise ValueError(f"amount {POISON_AMOUNT} breaks this model")
    return rows


def poisoned(fitted: Fitted) -> Fitted:
    """``fitted`` behind a step that raises on the poison amount (a real, picklable step)."""
    guard = FunctionTransformer(refuse_poison)
    guard.fit(np.zeros((1, 29)))
    return Fitted(Pipeline([("guard", guard), *fitted.pipeline.steps]), fitted.threshold)


def publish(
    settings: Settings, topic: str, values: Iterable[bytes | None], keys: Iterable[bytes | None]
) -> int:
    """Send each value with its key and wait for all acknowledgements."""
    producer = make_producer(settings.kafka, acks="all", max_request_size=8 * 1024 * 1024)
    sent = 0
    try:
        futures = [producer.send(topic, key=k, value=v) for k, v in zip(keys, values, strict=True)]
        producer.flush(timeout=60)
        for future in futures:
            future.get(timeout=1)
            sent += 1
    finally:
        producer.close()
    return sent


def publish_events(settings: Settings, topic: str, ids: Sequence[int]) -> None:
    """Send ``tx_event(i)`` for each ``i``, keyed by its event id."""
    publish(settings, topic, (tx_bytes(i) for i in ids), (f"tx-{i}".encode() for i in ids))


def predictions(
    settings: Settings,
    topic: str,
    *,
    expect: int | None = None,
    timeout_s: float = 60.0,
    isolation_level: str = "read_committed",
    ignore_keys: frozenset[bytes] = frozenset(),
) -> list[Prediction]:
    """The predictions on ``topic``, each checked against the contract's model (records
    keyed by one of ``ignore_keys`` left out)."""
    records = read_topic(
        settings, topic, expect=expect, timeout_s=timeout_s, isolation_level=isolation_level
    )
    out = []
    for record in records:
        if record.key in ignore_keys:
            continue
        prediction = Prediction.model_validate_json(record.value)
        assert record.key == prediction.event_id.encode()
        out.append(prediction)
    return out


def duplicates(items: Iterable[str]) -> dict[str, int]:
    """The items seen more than once, with their counts."""
    return {k: n for k, n in Counter(items).items() if n > 1}
