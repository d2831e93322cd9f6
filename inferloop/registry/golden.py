"""The golden sample: a few events and the scores a version gave them when registered.

Rows are built by the domain's own ``to_rows`` (the one featurisation entry point), so
the check exercises exactly the path a worker scores with.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from inferloop.domains import get_domain
from inferloop.registry.errors import GoldenMismatchError, InvalidVersionError

# (domain name, golden events) -> the pipeline's input rows
RowsBuilder = Callable[[str, Sequence[Mapping[str, Any]]], Any]

# Same scikit-learn minor version, but numpy or BLAS patch releases may move the last bits.
GOLDEN_ATOL = 1e-6


def domain_rows(domain: str, events: Sequence[Mapping[str, Any]]) -> Any:
    """Rows for ``events`` through the domain's validation and ``to_rows``."""
    spec = get_domain(domain)
    batch = spec.validate_batch([json.dumps(event).encode() for event in events])
    if batch.rejects:
        first = batch.rejects[0]
        raise InvalidVersionError(
            f"golden event {first.index} is not a valid {domain} event: "
            f"{first.reason} ({first.detail})"
        )
    return spec.to_rows(batch.events)


def scores(pipeline: Any, rows: Any) -> np.ndarray:
    """The positive-class scores of ``pipeline`` on ``rows``."""
    return np.asarray(pipeline.predict_proba(rows)[:, 1], dtype=np.float64)


def check(pipeline: Any, rows: Any, expected: Sequence[float], what: str) -> list[float]:
    """The scores of ``pipeline`` on ``rows``; GoldenMismatchError unless they reproduce
    the ``expected`` ones."""
    got = scores(pipeline, rows)
    want = np.asarray(expected, dtype=np.float64)
    if got.shape != want.shape:
        raise GoldenMismatchError(
            f"{what}: golden sample gave {got.shape[0]} scores, {want.shape[0]} were recorded"
        )
    worst = int(np.argmax(np.abs(got - want))) if got.size else 0
    if got.size and not np.allclose(got, want, rtol=0.0, atol=GOLDEN_ATOL):
        raise GoldenMismatchError(
            f"{what}: golden event {worst} scores {got[worst]!r}, recorded {want[worst]!r} "
            f"(tolerance {GOLDEN_ATOL}); refusing to use it"
        )
    return [float(score) for score in got]
