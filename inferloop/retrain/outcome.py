"""What one run did: the record the CLI prints, the service stores and the metrics count."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal[
    "promoted",  # the candidate is the champion now
    "challenger",  # shadow-first: the candidate is the challenger, the champion unchanged
    "rejected",  # the gate said no; the version is kept as rejected
    "insufficient_evidence",  # too few positives in the holdout to decide
    "not_comparable",  # the holdout overlaps what the champion was trained on
    "skipped",  # too few new labelled examples since the champion's data set
    "lock_held",  # another run of the domain holds the lease
    "lease_lost",  # the lease was taken over during the run: it could not promote
    "conflict",  # the champion moved during the run: it did not promote
    "cancelled",  # the service stopped before the run could finish
    "superseded",  # a newer trigger of the domain waited behind the same run: it runs instead
    "failed",  # an error; the reason says which
]
OUTCOMES: tuple[Outcome, ...] = (
    "promoted",
    "challenger",
    "rejected",
    "insufficient_evidence",
    "not_comparable",
    "skipped",
    "lock_held",
    "lease_lost",
    "conflict",
    "cancelled",
    "superseded",
    "failed",
)
# A run that reached a decision (or rightly decided there was nothing to do).
SUCCESSFUL: frozenset[Outcome] = frozenset(
    {"promoted", "challenger", "rejected", "insufficient_evidence", "not_comparable", "skipped"}
)


@dataclass
class RunOutcome:
    """The record of one run of one domain."""

    run_id: str
    domain: str
    trigger: str
    outcome: Outcome
    reason: str
    started_at: str
    finished_at: str = ""
    duration_s: float = 0.0
    version: int | None = None
    champion_version: int | None = None
    records_read: int = 0  # records read from Kafka by this run (not from the cache)
    examples: int = 0  # labelled examples after de-duplication
    holdout: int = 0
    holdout_positives: int = 0
    primary_metric: str | None = None
    candidate: float | None = None
    champion: float | None = None
    durations_s: dict[str, float] = field(default_factory=dict)
    lock_holder: str | None = None
    report_dir: str | None = None
    fire_time: str | None = None
    # calibration | pooled_folds | holdout: where the candidate's threshold came from.
    threshold_source: str | None = None
    # After this run the domain's champion is below its floor (an alarm).
    champion_below_floor: bool = False

    @property
    def successful(self) -> bool:
        """Whether the run reached a decision (see :data:`SUCCESSFUL`)."""
        return self.outcome in SUCCESSFUL

    def summary_line(self) -> str:
        """One line: rows, duration, candidate vs champion, decision."""
        parts = [f"retrain {self.domain} [{self.run_id}] {self.outcome}"]
        if self.version is not None:
            parts.append(f"v{self.version}")
        parts.append(f"rows read {self.records_read}, examples {self.examples}")
        if self.holdout:
            parts.append(f"holdout {self.holdout} ({self.holdout_positives} positive)")
        if self.candidate is not None:
            if self.champion is not None:
                vs = f"champion v{self.champion_version} {self.champion:.4f}"
            elif self.champion_version is not None:
                vs = f"champion v{self.champion_version} not compared"
            else:
                vs = "no champion"
            parts.append(f"{self.primary_metric} candidate {self.candidate:.4f} vs {vs}")
        if self.threshold_source is not None:
            parts.append(f"threshold from {self.threshold_source}")
        if self.champion_below_floor:
            parts.append("CHAMPION BELOW FLOOR")
        parts.append(f"{self.duration_s:.1f}s")
        if self.durations_s:
            # The steps themselves; their parts ("fit.model") stay in the record.
            steps = " ".join(f"{k}={v:.1f}s" for k, v in self.durations_s.items() if "." not in k)
            parts.append(f"({steps})")
        return ", ".join(parts) + f": {self.reason}"

    def to_json(self) -> str:
        """The record as JSON (NaN becomes null)."""
        return json.dumps(_clean(dataclasses.asdict(self)), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> RunOutcome:
        """The record :meth:`to_json` wrote."""
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value
