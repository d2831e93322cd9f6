"""Encoding predictions (and the challenger's shadow records): pure logic."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np

from inferloop.domains.predictions import PredictionEncoder
from inferloop.worker.shadow import ROLE_MEMBER

EVENTS = [
    SimpleNamespace(id="tx-1", event_time=datetime(2026, 12, 7, 12, 0, tzinfo=UTC)),
    SimpleNamespace(id="tx-2", event_time=datetime(2026, 12, 7, 12, 1, tzinfo=UTC)),
]
PREDICTION_1 = (
    b'{"event_id":"tx-1","domain":"transactions","label":"legit","score":0.25,'
    b'"threshold":0.5,"model":{"name":"m","version":2},'
    b'"event_time":"2026-12-07T12:00:00+00:00","predicted_at":"2026-12-07T12:00:05+00:00",'
    b'"schema_version":1}'
)


def encode(extra: str = "") -> list[bytes]:
    encoder = PredictionEncoder("transactions", ("legit", "fraud"))
    return encoder.encode(
        EVENTS, np.array([0.25, 0.75]), threshold=0.5, model_json='{"name":"m","version":2}',
        predicted_at="2026-12-07T12:00:05+00:00", extra=extra,
    ).values  # fmt: skip


def test_a_prediction_is_its_schemas_bytes() -> None:
    assert encode()[0] == PREDICTION_1


def test_a_shadow_record_is_the_prediction_with_the_role_last() -> None:
    # The bytes shadow records had when the role was spliced onto the encoded value.
    assert encode(ROLE_MEMBER)[0] == PREDICTION_1[:-1] + b',"role":"challenger"}'
    assert [v[:-1] + b',"role":"challenger"}' for v in encode()] == encode(ROLE_MEMBER)
