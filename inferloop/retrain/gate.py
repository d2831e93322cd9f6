"""The promotion gate: is the candidate good enough, and really better than the champion?

Pure logic on the scores both models gave one holdout; the job acts on the decision.
In order:

1. fewer positives in the holdout than ``min_positives`` (or a holdout with one
   class): ``insufficient_evidence`` (0.18 % fraud in 10,000 rows is 18 positives;
   a decision on those is a coin flip);
2. the candidate's primary metric below the domain's floor: ``reject``;
3. no champion: ``promote`` (the first model of a domain only has to clear the floor);
   a champion that could not be scored: ``not_comparable``;
4. a holdout that is not newer than everything the champion was trained on:
   ``not_comparable`` (the champion would be scored on its own training data);
5. a guardrail metric worse than the champion's by more than its tolerance: ``reject``;
6. the lower 5th percentile of a seeded paired bootstrap of (candidate - champion)
   on the primary metric must clear the margin: ``promote``, else ``reject``.
"""

from __future__ import annotations

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
    comparable: bool = True,
    comparable_reason: str = "",
    champion_error: str | None = None,
    fallback: MetricFn | None = None,
) -> GateResult:
    """Apply the gate (see the module's docstring) and say why.

    ``champion_error`` says why a champion that exists could not be scored: the
    candidate then cannot be compared, so it is not promoted either.
    """
    name = config.primary_metric
    base = _Figures(
        primary_metric=name,
        candidate=candidate.metric(name),
        champion=None if champion is None else champion.metric(name),
        positives=int(np.count_nonzero(y)),
    )
    early = _on_its_own(config, len(y), base)
    if early is not None:
        return early
    if champion_error is not None:
        return GateResult("not_comparable", champion_error, **base)
    if champion is None:
        value = base["candidate"]
        reason = f"first model: {name} {value:.4f} clears the floor {config.floor:.4f}"
        return GateResult("promote", reason, **base)
    if not comparable:
        return GateResult("not_comparable", comparable_reason, **base)
    broken = _broken_guardrail(config, candidate, champion)
    if broken is not None:
        return GateResult("reject", broken, **base)
    return _bootstrap_decision(
        config,
        y,
        (candidate.scores, champion.scores),
        base,
        champion.metric(name),
        fallback=fallback,
    )


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
