"""A verified version, ready to score: what a worker serves and what promote checks.

``activate`` takes a loaded (signature- and digest-checked, unpickled) version and checks
it the way a scoring process will use it: the input schema version, and the golden scores
reproduced through this process's own validation, featurisation and the domain's fastest
scorer that reproduces them. The worker serves the result; promote, rollback and import
run the same check first, so a version that would be refused by a worker is never moved
to an alias. Batch scorers and the monitor use it without importing the worker.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from inferloop.domains import DomainSpec
from inferloop.domains.spec import Scorer
from inferloop.registry.entities import AliasTarget, LoadedModel
from inferloop.registry.errors import GoldenMismatchError, SchemaMismatchError

log = logging.getLogger(__name__)

GOLDEN_RTOL = 1e-6
GOLDEN_ATOL = 1e-9


@dataclass(frozen=True)
class ActiveModel:
    """A verified version, ready to score a batch of validated events."""

    name: str
    version: int
    digest: str
    threshold: float
    pipeline: Any
    spec: DomainSpec
    scorer: Scorer
    holdout_positive_rate: float | None = None

    @property
    def target(self) -> AliasTarget:
        """The alias target this model was loaded from."""
        return AliasTarget(self.version, self.digest)

    @property
    def ref(self) -> str:
        """``name@version``, as dead letters name the model."""
        return f"{self.name}@{self.version}"

    @property
    def ref_json(self) -> str:
        """The prediction's ``model`` object, pre-encoded."""
        return json.dumps({"name": self.name, "version": self.version}, separators=(",", ":"))

    def score(self, events: Sequence[Any]) -> np.ndarray[Any, Any]:
        """Positive-class scores of ``events``: one vectorised call."""
        return self.scorer(self.spec.to_rows(events))


def activate(loaded: LoadedModel, spec: DomainSpec) -> ActiveModel:
    """``loaded`` checked by this process: schema version, and golden scores reproduced
    through this process's own validation, featurisation and scorer.

    The scorer is the domain's fastest (``DomainSpec.scorers``) that reproduces them; a
    compiled form that does not is passed over, with a warning, for the pipeline itself.
    Raises :class:`SchemaMismatchError` or :class:`GoldenMismatchError`.
    """
    mv = loaded.version
    if mv.input_schema_version != spec.schema_version:
        raise SchemaMismatchError(
            f"{mv.name} v{mv.version} expects input schema v{mv.input_schema_version}, "
            f"this process validates v{spec.schema_version}"
        )
    *faster, plain = spec.scorers(loaded.pipeline)
    model = ActiveModel(
        name=mv.name,
        version=mv.version,
        digest=mv.artifact_digest,
        threshold=float(mv.threshold),
        pipeline=loaded.pipeline,
        spec=spec,
        scorer=plain,
        holdout_positive_rate=holdout_positive_rate(mv.metrics),
    )
    for scorer in faster:
        candidate = replace(model, scorer=scorer)
        try:
            check_golden(candidate, mv.golden.events, mv.golden.scores)
        except GoldenMismatchError as exc:
            log.warning("%s: not scoring with %s: %s", model.ref, scorer.name, exc)
        else:
            return candidate
    check_golden(model, mv.golden.events, mv.golden.scores)
    return model


def check_golden(model: ActiveModel, events: Sequence[Any], expected: Sequence[float]) -> None:
    """Raise :class:`GoldenMismatchError` unless ``model`` reproduces its golden scores."""
    if not events:
        raise GoldenMismatchError(f"{model.ref} has no golden sample to verify")
    values = [json.dumps(dict(e)).encode() for e in events]
    validated = model.spec.validate_batch(values)
    if validated.rejects:
        first = validated.rejects[0]
        raise GoldenMismatchError(
            f"{model.ref}: golden event {first.index} fails validation here: "
            f"{first.reason}: {first.detail}"
        )
    got = model.score(validated.events)
    want = np.asarray(expected, dtype=np.float64)
    if got.shape != want.shape or not np.allclose(got, want, rtol=GOLDEN_RTOL, atol=GOLDEN_ATOL):
        worst = float(np.max(np.abs(got - want))) if got.shape == want.shape else float("nan")
        raise GoldenMismatchError(
            f"{model.ref} does not reproduce its golden scores here (largest difference {worst:g})"
        )


def holdout_positive_rate(metrics: Any) -> float | None:
    """The share of its holdout the version flagged positive at training time, from the
    recorded confusion counts ((tp + fp) / n), when they were recorded."""
    if not hasattr(metrics, "get"):
        return None
    nested = metrics.get("holdout")
    if hasattr(nested, "get"):
        metrics = nested
    tp, fp, n = metrics.get("tp"), metrics.get("fp"), metrics.get("n")
    if all(isinstance(v, (int, float)) for v in (tp, fp, n)) and n:
        return float((tp + fp) / n)
    return None
