"""Rebuild a version from its lineage: the same offsets and recipe must give the same model.

The records are read from Kafka itself, never from the local cache, over exactly the
offset ranges the lineage names; the recipe (split, folds, seed, threads) comes from
the lineage too. The rebuilt candidate's holdout metrics and the digest of its
holdout predictions are compared with what the version recorded.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from inferloop.domains import get_domain
from inferloop.registry import Registry
from inferloop.retrain.errors import RebuildError
from inferloop.retrain.progress import Progress
from inferloop.retrain.provenance import code_commit, lock_file_sha256
from inferloop.retrain.recipe import Recipe, train_and_score
from inferloop.retrain.snapshot import SnapshotReader, ranges_from_lineage
from inferloop.settings import Settings

log = logging.getLogger(__name__)

METRIC_TOLERANCE = 1e-9


@dataclass
class MetricCheck:
    """One metric as recorded and as rebuilt."""

    name: str
    recorded: float | None
    rebuilt: float | None

    @property
    def matches(self) -> bool:
        """Equal within the tolerance (both undefined counts as equal)."""
        a, b = _number(self.recorded), _number(self.rebuilt)
        if a is None or b is None:
            return a is None and b is None
        return abs(a - b) <= METRIC_TOLERANCE


@dataclass
class RebuildResult:
    """What the rebuild found."""

    name: str
    version: int
    records: int
    examples: int
    metrics: list[MetricCheck]
    digest_recorded: str | None
    digest_rebuilt: str
    provenance: dict[str, dict[str, str | None]] = field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def matches(self) -> bool:
        """Every metric and the holdout predictions' digest match."""
        return self.digest_recorded == self.digest_rebuilt and all(m.matches for m in self.metrics)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def rebuild(
    settings: Settings,
    registry: Registry,
    name: str,
    version: int,
    progress: Progress | None = None,
) -> RebuildResult:
    """Refit ``name`` ``version`` from Kafka by its lineage and compare the results."""
    started = time.perf_counter()
    stored = registry.get_version(name, version)
    lineage = dict(stored.lineage)
    if "source" not in lineage or "training_config" not in lineage:
        raise RebuildError(
            f"{name} v{version} has no retrain lineage (imported?): nothing to rebuild it from"
        )
    spec = get_domain(stored.domain)
    recipe = Recipe.from_lineage(lineage)
    source = lineage["source"]
    ranges = ranges_from_lineage(source["partitions"])
    log.info(
        "rebuild %s v%d start: %s %s",
        name,
        version,
        source["topic"],
        ", ".join(f"p{r.partition}[{r.start},{r.end})" for r in ranges),
    )
    with SnapshotReader(settings.kafka, spec, cache=None, progress=progress) as reader:
        snapshot = reader.read(
            source["topic"], ranges, float(source["taken_at_s"]), check_available=True
        )
    trained = train_and_score(
        spec, snapshot, recipe, nice=settings.retrain.fit_nice, progress=progress
    )
    recorded = dict(stored.metrics)
    checks = [
        MetricCheck(k, recorded.get(k), trained.metrics.get(k))
        for k in sorted(set(recorded) | set(trained.metrics))
    ]
    result = RebuildResult(
        name=name,
        version=version,
        records=snapshot.records,
        examples=len(trained.examples),
        metrics=checks,
        digest_recorded=lineage.get("holdout_predictions_sha256"),
        digest_rebuilt=trained.predictions_sha256,
        provenance={
            "code_commit": {"recorded": lineage.get("code_commit"), "now": code_commit()},
            "lock_file_sha256": {
                "recorded": lineage.get("lock_file_sha256"),
                "now": lock_file_sha256(),
            },
            "training_config_sha256": {
                "recorded": lineage.get("training_config_sha256"),
                "now": recipe.sha256(),
            },
        },
        duration_s=round(time.perf_counter() - started, 3),
    )
    log.info(
        "rebuild %s v%d finish: %s in %.1fs",
        name,
        version,
        "matches" if result.matches else "DIFFERS",
        result.duration_s,
    )
    return result
