"""The promotion gate: is the candidate good enough, and really better than the champion?

Pure logic on the scores both models gave one holdout; the job acts on the decision.
Each step either decides, with one reason, or passes to the next:

1. comparability: a champion whose holdout scores would not be a fair comparison (its
   training data reaches into this holdout, its lineage does not say what it was
   trained on, or it could not be scored): ``not_comparable``. First, because every
   later step would compare with a figure that means nothing;
2. evidence: fewer positives in the holdout than ``min_positives`` (or a holdout with
   one class): ``insufficient_evidence`` (0.18 % fraud in 10,000 rows is 18
   positives; a decision on those is a coin flip);
3. the floor: the candidate's primary metric below the domain's floor: ``reject``;
   with no champion, a candidate that clears it is promoted (the first model of a
   domain only has to clear the floor);
4. the win: the lower 5th percentile of a seeded paired bootstrap of (candidate -
   champion) on the primary metric must clear the margin, else ``reject``;
5. guardrails: a winner whose guardrail metric is worse than the champion's by more
   than its tolerance: ``reject``; else ``promote``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypedDict

import numpy as np

from inferloop.retrain.bootstrap import MetricFn, ModelScores, paired_deltas

Decision = Literal["promote", "reject", "insufficient_evidence", "not_comparable"]
DECISIONS: tuple[Decision, ...] = ("promote", "reject", "insufficient_evidence", "not_comparable")

LOWER_PERCENTILE = 5.0


@dataclass(frozen=True)
class Guardrail:
    """A metric the candidate may not make worse than the champion's by over ``tolerance``."""

    metric: str
    higher_is_better: bool
    tolerance: float

    def broken(self, candidate: float, champion: float) -> bool:
        """Whether the candidate's value breaks this guardrail."""
        if math.isnan(candidate) or math.isnan(champion):
            return False
        if self.higher_is_better:
            return candidate < champion - self.tolerance
        return candidate > champion + self.tolerance


# Per domain: what a better primary metric must not cost. Emails: legitimate mail
# flagged (the domain's whole target); transactions: fraud caught at the threshold.
GUARDRAILS: dict[str, tuple[Guardrail, ...]] = {
    "emails": (Guardrail("fpr", False, 0.005), Guardrail("roc_auc", True, 0.01)),
    "transactions": (Guardrail("recall", True, 0.05), Guardrail("roc_auc", True, 0.01)),
}


@dataclass(frozen=True)
class GateConfig:
    """Everything the gate decides with, besides the scores."""

    primary_metric: str
    floor: float
    margin: float
    min_positives: int
    rounds: int
    seed: int
    guardrails: tuple[Guardrail, ...] = ()


class _Figures(TypedDict):
    """What every decision reports: the metric, both models' values, the positives."""

    primary_metric: str
    candidate: float
    champion: float | None
    positives: int


class _Bootstrap(TypedDict):
    """What the paired bootstrap adds to a decision."""

    delta: float
    delta_p05: float
    delta_mean: float
    rounds: int


@dataclass(frozen=True)
class GateResult:
    """The decision, why, and the figures it rests on."""

    decision: Decision
    reason: str
    primary_metric: str
    candidate: float
    champion: float | None
    delta: float | None = None
    delta_p05: float | None = None
    delta_mean: float | None = None
    rounds: int = 0
    positives: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The result as plain JSON-able values."""
        return asdict(self)


@dataclass(frozen=True)
class Contender:
    """One model on the holdout: its scores and threshold, and its metrics there."""

    scores: ModelScores
    metrics: Mapping[str, float]

    def metric(self, name: str) -> float:
        """One metric as a float."""
        return float(self.metrics[name])


def decide(
    config: GateConfig,
    y: np.ndarray[Any, Any],
    candidate: Contender,
    champion: Contender | None,
    *,
    not_comparable: str | None = None,
    fallback: MetricFn | None = None,
) -> GateResult:
    """Apply the gate (see the module's docstring) and say why.

    ``not_comparable`` says why a champion that exists cannot be compared with the
    candidate on this holdout (None: it can, or there is no champion); the champion's
    scores are then not used, and the candidate is not promoted.
    """
    name = config.primary_metric
    comparable = champion if not_comparable is None else None
    base = _Figures(
        primary_metric=name,
        candidate=candidate.metric(name),
        champion=None if comparable is None else comparable.metric(name),
        positives=int(np.count_nonzero(y)),
    )
    if not_comparable is not None:
        return GateResult("not_comparable", not_comparable, **base)
    early = _on_its_own(config, len(y), base)
    if early is not None:
        return early
    if comparable is None:
        value = base["candidate"]
        reason = f"first model: {name} {value:.4f} clears the floor {config.floor:.4f}"
        return GateResult("promote", reason, **base)
    result = _bootstrap_decision(
        config,
        y,
        (candidate.scores, comparable.scores),
        base,
        comparable.metric(name),
        fallback=fallback,
    )
    if result.decision != "promote":
        return result
    broken = _broken_guardrail(config, candidate, comparable)
    if broken is None:
        return result
    return dataclasses.replace(result, decision="reject", reason=broken)


def _on_its_own(config: GateConfig, n: int, base: _Figures) -> GateResult | None:
    """The decisions that need no champion: too little evidence, below the floor."""
    positives, value = base["positives"], base["candidate"]
    if positives < config.min_positives or positives == n or math.isnan(value):
        reason = (
            f"{positives} positives in the holdout of {n}; "
            f"at least {config.min_positives} (and some negatives) are needed to decide"
        )
        return GateResult("insufficient_evidence", reason, **base)
    if value < config.floor:
        reason = f"{config.primary_metric} {value:.4f} is below the floor {config.floor:.4f}"
        return GateResult("reject", reason, **base)
    return None


def _broken_guardrail(config: GateConfig, candidate: Contender, champion: Contender) -> str | None:
    for guard in config.guardrails:
        cand, champ = candidate.metric(guard.metric), champion.metric(guard.metric)
        if guard.broken(cand, champ):
            return (
                f"guardrail {guard.metric}: {cand:.4f} against the champion's {champ:.4f} "
                f"(tolerance {guard.tolerance})"
            )
    return None


def _bootstrap_decision(
    config: GateConfig,
    y: np.ndarray[Any, Any],
    pair: tuple[ModelScores, ModelScores],
    base: _Figures,
    champion_value: float,
    *,
    fallback: MetricFn | None,
) -> GateResult:
    candidate, champion = pair
    name = config.primary_metric
    delta = base["candidate"] - champion_value
    deltas = paired_deltas(
        name, y, candidate, champion, rounds=config.rounds, seed=config.seed, fallback=fallback
    )
    if len(deltas) == 0:
        return GateResult(
            "insufficient_evidence", "no bootstrap round had both classes", delta=delta, **base
        )
    p05 = float(np.percentile(deltas, LOWER_PERCENTILE))
    figures = _Bootstrap(
        delta=delta, delta_p05=p05, delta_mean=float(deltas.mean()), rounds=len(deltas)
    )
    if p05 > config.margin:
        reason = (
            f"{name} {base['candidate']:.4f} vs champion {champion_value:.4f}: "
            f"+{delta:.4f}, lower 5th percentile {p05:+.4f} clears the margin "
            f"{config.margin}"
        )
        return GateResult("promote", reason, **figures, **base)
    reason = (
        f"no real win: {name} {base['candidate']:.4f} vs champion "
        f"{champion_value:.4f} ({delta:+.4f}); the lower 5th percentile of the "
        f"paired bootstrap {p05:+.4f} does not clear the margin {config.margin}"
    )
    return GateResult("reject", reason, **figures, **base)
