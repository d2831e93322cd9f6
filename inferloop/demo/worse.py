"""A version that is clearly worse on the current stream, registered for an operator to
promote by hand (the monitor should catch it and roll it back).

It is the domain's own pipeline, fitted on the oldest slice of the data set with a
weakening parameter, its threshold chosen in-sample for the domain's target: signed with
the run's key and registered through :meth:`Registry.register` as a ``candidate``, as the
retrain job would, but never gated (the gate would refuse it: that is the point).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from inferloop.demo.plan import WorsePlan
from inferloop.domains import get_domain
from inferloop.domains.datasets import Dataset
from inferloop.domains.training import build
from inferloop.registry import Registry
from inferloop.registry.entities import ModelVersion

log = logging.getLogger(__name__)

GOLDEN_EVENTS = 20
LABEL_FIELDS = ("label", "labelled_at")


def register_worse(registry: Registry, data: Dataset, plan: WorsePlan, seed: int) -> ModelVersion:
    """Fit the weakened pipeline on the oldest ``plan.fraction`` of ``data`` and register
    it as a candidate of the domain."""
    spec = get_domain(data.domain)
    began = time.monotonic()
    n = max(int(plan.fraction * len(data)), GOLDEN_EVENTS)
    events, y = list(data.events[:n]), np.asarray(data.y[:n])
    rows = spec.to_rows(events)
    pipeline = build(spec, seed, plan.params).fit(rows, y)
    scores = pipeline.predict_proba(rows)[:, 1]
    threshold = spec.choose_threshold(y, scores)
    metrics = spec.metrics(y, scores, threshold)
    params: dict[str, Any] = {"seed": seed, "pipeline": dict(plan.params), "rows": n}
    version = registry.register(
        spec.name,
        pipeline,
        domain=spec.name,
        threshold=threshold,
        input_schema_version=spec.schema_version,
        golden_events=[_golden(e) for e in events[-GOLDEN_EVENTS:]],
        params=params,
        metrics=metrics,
        champion_metrics=None,
        lineage={"source": f"{data.name}: the oldest {n} examples", "positives": int(y.sum())},
        created_by="demo-operator",
        description=f"demo: {plan.why} (in-sample metrics; never gated)",
        tags={"trigger": "operator-by-hand", "demo": "worse"},
    )
    log.info(
        "%s: registered v%d, worse on purpose (%s), in %.1f s",
        spec.name, version.version, plan.why, time.monotonic() - began,
    )  # fmt: skip
    return version


def _golden(event: Any) -> dict[str, Any]:
    body: dict[str, Any] = event.model_dump(mode="json")
    for name in LABEL_FIELDS:
        body.pop(name, None)
    return body
