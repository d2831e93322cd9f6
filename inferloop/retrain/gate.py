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
   domain only has to clear the floor). The floor guards the first model and a
   champion that meets it: when the champion is itself below the floor, a candidate
   below it too goes on to the win step, and one that beats the champion is promoted
   (``champion_below_floor`` stays set, for an alarm) rather than leave the worse model;
4. the win: the lower 5th percentile of a seeded paired bootstrap of (candidate -
   champion) must clear the margin, else ``reject``. A threshold metric (emails' F1)
   is compared at a matched operating point: in every resample each model's
   threshold is re-derived for the domain's target (the same share of ham flagged,
   or the same fraud recall), so that ranking decides, not whose threshold happened to
   land better on this holdout. With fewer examples of the target's class than
   ``10 / target`` that is noise; the comparison is then the partial ROC-AUC up to the
   false-positive rate the holdout's negatives can resolve (10 / negatives, at most
   :data:`PAUC_MAX_FPR`), and failing that ``insufficient_evidence``. A ranking metric
   (AUPRC) is compared as it is. No real win, but not worse either (the upper 95th
   percentile at or above 0) while the champion's own threshold misses the target on
   this holdout with evidence (the lower 95 % bound of its rate above the target) and
   the candidate's meets it: ``promote`` as a threshold refresh, since the same ranking
   with a threshold that holds is better for everyone who gets its decisions;
5. guardrails: a winner whose guardrail metric is worse than the champion's by more
   than its tolerance: ``reject``; else ``promote``. No guardrail is a threshold
   metric: the candidate's threshold is judged apart (the job's realised-rate check).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypedDict

import numpy as np

from inferloop.domains.metrics import EXPECTED_ERRORS, RealisedRate, ThresholdTarget
from inferloop.retrain.bootstrap import (
    THRESHOLD_METRICS,
    MatchedMetric,
    Measure,
    MetricFn,
    ModelScores,
    PartialAuc,
    paired_deltas,
    paired_measure_deltas,
)

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


# Per domain: what a better primary metric must not cost. Ranking only: the ham
# flagged (emails) and the fraud recall (transactions) at each model's own threshold
# are the threshold's doing, judged by the realised-rate check and on live labels; as
# guardrails they refused candidates that ranked better (issue 33).
GUARDRAILS: dict[str, tuple[Guardrail, ...]] = {
    "emails": (Guardrail("roc_auc", True, 0.01),),
    "transactions": (Guardrail("roc_auc", True, 0.01),),
}

# The partial ROC-AUC fallback needs 10 negatives at its widest false-positive rate;
# wider than this (fewer than 50 negatives), the holdout cannot decide.
PAUC_MAX_FPR = 0.2
# The negatives a partial ROC-AUC up to PAUC_MAX_FPR needs (EXPECTED_ERRORS false
# positives there).
PAUC_MIN_NEGATIVES = math.ceil(EXPECTED_ERRORS / PAUC_MAX_FPR)


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
    # The threshold's target: where a threshold primary metric is compared (None: at
    # each model's own threshold, as given).
    target: ThresholdTarget | None = None


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
    delta_p95: float
    rounds: int
    compared: str
    candidate_compared: float
    champion_compared: float


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
    delta_p95: float | None = None
    rounds: int = 0
    positives: int = 0
    # What the win step compared, and both models' value of it on the whole holdout.
    compared: str = ""
    candidate_compared: float | None = None
    champion_compared: float | None = None
    # After this decision the domain's champion is below its floor (alarm).
    champion_below_floor: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The result as plain JSON-able values."""
        return asdict(self)


@dataclass(frozen=True)
class Contender:
    """One model on the holdout: its scores and threshold, and its metrics there.

    ``threshold_in_sample``: the threshold was chosen with this holdout (the job's
    ``threshold_source`` "holdout"), so its threshold metrics here would be in-sample:
    the gate judges the threshold primary metric at the matched operating point instead
    (it does not use the threshold), or, when the holdout has too few of the target's
    class for one, on ``metrics``, which the job then takes at the calibration threshold
    (out of sample); and it grants no threshold refresh.
    """

    scores: ModelScores
    metrics: Mapping[str, float]
    threshold_in_sample: bool = False

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
    note = ""
    if candidate.threshold_in_sample and name in THRESHOLD_METRICS:
        judged = _matched_figure(config, y, candidate)
        where = "the calibration threshold's, out of sample"
        if judged is not None:
            base["candidate"], where = judged, "at the matched operating point"
        note = (
            f"; the candidate's threshold was re-derived with this holdout, so its {name} "
            f"is judged {where} ({base['candidate']:.4f})"
        )
    result = _decide(config, y, candidate, comparable, base, fallback=fallback)
    return dataclasses.replace(
        result,
        reason=result.reason + note,
        champion_below_floor=_below_floor_after(config, result),
    )


def _matched_figure(
    config: GateConfig, y: np.ndarray[Any, Any], candidate: Contender
) -> float | None:
    """The candidate's threshold metric at the matched operating point on the holdout
    (None: no target, or too few of its class for one)."""
    name, target = config.primary_metric, config.target
    y = np.asarray(y)
    if target is None or int(np.count_nonzero(y == target.error_class)) < target.needed:
        return None
    return MatchedMetric(name, y, np.asarray(candidate.scores.scores), target).value()


def _decide(
    config: GateConfig,
    y: np.ndarray[Any, Any],
    candidate: Contender,
    champion: Contender | None,
    base: _Figures,
    *,
    fallback: MetricFn | None,
) -> GateResult:
    """Steps 2 to 5, with a comparable champion (or none)."""
    early = _evidence(config, len(y), base) or _floor(config, base)
    if early is not None:
        return early
    name = config.primary_metric
    if champion is None:
        value = base["candidate"]
        reason = f"first model: {name} {value:.4f} clears the floor {config.floor:.4f}"
        return GateResult("promote", reason, **base)
    result = _bootstrap_decision(config, y, (candidate.scores, champion.scores), base, fallback)
    if result.decision == "reject" and result.delta_p95 is not None and result.delta_p95 >= 0:
        refresh = _threshold_refresh(config, y, candidate, champion)
        if refresh is not None:
            result = dataclasses.replace(result, decision="promote", reason=refresh)
    if result.decision != "promote":
        return result
    broken = _broken_guardrail(config, candidate, champion)
    if broken is not None:
        return dataclasses.replace(result, decision="reject", reason=broken)
    if base["candidate"] < config.floor:
        reason = (
            f"{result.reason}; the champion is below the floor too "
            f"({base['champion']:.4f}): promoted as the better of two below the floor "
            f"{config.floor:.4f}"
        )
        return dataclasses.replace(result, reason=reason)
    return result


def _threshold_refresh(
    config: GateConfig, y: np.ndarray[Any, Any], candidate: Contender, champion: Contender
) -> str | None:
    """Why a tie on ranking is promoted for its threshold (None: it is not)."""
    target = config.target
    if target is None or candidate.threshold_in_sample:
        # An in-sample threshold meets its target on this holdout by construction.
        return None
    champ = RealisedRate.of_counts(
        *target.errors(y, champion.scores.scores, champion.scores.threshold)
    )
    cand = RealisedRate.of_counts(
        *target.errors(y, candidate.scores.scores, candidate.scores.threshold)
    )
    if not (champ.lower > target.rate and cand.rate <= target.rate):
        return None
    return (
        f"threshold refresh: ranking no worse than the champion's, whose threshold misses "
        f"the target ({target.describe()}) on the holdout: {champ.errors} of {champ.of} "
        f"({champ.rate:.2%}, at least {champ.lower:.2%}) against the candidate's "
        f"{cand.errors} of {cand.of} ({cand.rate:.2%})"
    )


def _below_floor_after(config: GateConfig, result: GateResult) -> bool:
    """Whether the champion after ``result`` is below the floor (on this holdout)."""
    if result.decision == "promote":
        return result.candidate < config.floor
    if result.decision == "not_comparable" or result.champion is None:
        return False
    return result.champion < config.floor


def _evidence(config: GateConfig, n: int, base: _Figures) -> GateResult | None:
    """Too little evidence to decide anything."""
    positives, value = base["positives"], base["candidate"]
    if positives < config.min_positives or positives == n or math.isnan(value):
        reason = (
            f"{positives} positives in the holdout of {n}; "
            f"at least {config.min_positives} (and some negatives) are needed to decide"
        )
        return GateResult("insufficient_evidence", reason, **base)
    return None


def _floor(config: GateConfig, base: _Figures) -> GateResult | None:
    """Below the floor: rejected, unless the champion is below it too (then the win decides)."""
    value, champion = base["candidate"], base["champion"]
    if value >= config.floor:
        return None
    if champion is not None and champion < config.floor:
        return None
    reason = f"{base['primary_metric']} {value:.4f} is below the floor {config.floor:.4f}"
    return GateResult("reject", reason, **base)


def _broken_guardrail(config: GateConfig, candidate: Contender, champion: Contender) -> str | None:
    for guard in config.guardrails:
        cand, champ = candidate.metric(guard.metric), champion.metric(guard.metric)
        if guard.broken(cand, champ):
            return (
                f"guardrail {guard.metric}: {cand:.4f} against the champion's {champ:.4f} "
                f"(tolerance {guard.tolerance})"
            )
    return None


@dataclass(frozen=True)
class Comparison:
    """What the win step compares: a name and each model's measure on resamples."""

    name: str
    candidate: Measure
    champion: Measure
    candidate_value: float
    champion_value: float


def comparison(
    config: GateConfig, y: np.ndarray[Any, Any], pair: tuple[ModelScores, ModelScores]
) -> Comparison | str | None:
    """The matched-operating-point (or partial AUC) comparison of a threshold metric.

    None: the primary metric is compared as it is (a ranking metric, or no target);
    a string: why the holdout cannot compare the two (``insufficient_evidence``).
    """
    name, target = config.primary_metric, config.target
    if target is None or name not in THRESHOLD_METRICS:
        return None
    y = np.asarray(y)
    cand, champ = (np.asarray(p.scores) for p in pair)
    of_class = int(np.count_nonzero(y == target.error_class))
    if of_class >= target.needed:
        c, h = MatchedMetric(name, y, cand, target), MatchedMetric(name, y, champ, target)
        label = f"{name} at a matched operating point ({target.describe()})"
        return Comparison(label, c, h, c.value(), h.value())
    negatives = int(np.count_nonzero(y == 0))
    floor_rate = target.rate if target.error_class == 0 else 0.0
    max_fpr = max(floor_rate, EXPECTED_ERRORS / negatives) if negatives else math.inf
    if max_fpr > PAUC_MAX_FPR:
        return (
            f"{of_class} examples of class {target.error_class} in the holdout, fewer than "
            f"the {target.needed} a matched operating point needs, and {negatives} negatives, "
            f"fewer than the {PAUC_MIN_NEGATIVES} a partial AUC needs"
        )
    pc, ph = PartialAuc(y, cand, max_fpr), PartialAuc(y, champ, max_fpr)
    label = (
        f"partial ROC-AUC to {max_fpr:.2%} flagged ({of_class} of class "
        f"{target.error_class}, fewer than the {target.needed} a matched point needs)"
    )
    return Comparison(label, pc, ph, pc.value(), ph.value())


def _bootstrap_decision(
    config: GateConfig,
    y: np.ndarray[Any, Any],
    pair: tuple[ModelScores, ModelScores],
    base: _Figures,
    fallback: MetricFn | None,
) -> GateResult:
    compared = comparison(config, y, pair)
    if isinstance(compared, str):
        return GateResult("insufficient_evidence", compared, **base)
    if compared is None:
        name = config.primary_metric
        cand_value, champ_value = base["candidate"], float(base["champion"] or 0.0)
        deltas = paired_deltas(
            name, y, *pair, rounds=config.rounds, seed=config.seed, fallback=fallback
        )
    else:
        name, cand_value, champ_value = (
            compared.name,
            compared.candidate_value,
            compared.champion_value,
        )
        deltas = paired_measure_deltas(
            compared.candidate, compared.champion, len(y), rounds=config.rounds, seed=config.seed
        )
    delta = cand_value - champ_value
    if len(deltas) == 0:
        return GateResult(
            "insufficient_evidence", "no bootstrap round had both classes", delta=delta, **base
        )
    p05 = float(np.percentile(deltas, LOWER_PERCENTILE))
    figures = _Bootstrap(
        delta=delta,
        delta_p05=p05,
        delta_mean=float(deltas.mean()),
        delta_p95=float(np.percentile(deltas, 100.0 - LOWER_PERCENTILE)),
        rounds=len(deltas),
        compared=name,
        candidate_compared=cand_value,
        champion_compared=champ_value,
    )
    if p05 > config.margin:
        reason = (
            f"{name} {cand_value:.4f} vs champion {champ_value:.4f}: "
            f"+{delta:.4f}, lower 5th percentile {p05:+.4f} clears the margin "
            f"{config.margin}"
        )
        return GateResult("promote", reason, **figures, **base)
    reason = (
        f"no real win: {name} {cand_value:.4f} vs champion "
        f"{champ_value:.4f} ({delta:+.4f}); the lower 5th percentile of the "
        f"paired bootstrap {p05:+.4f} does not clear the margin {config.margin}"
    )
    return GateResult("reject", reason, **figures, **base)
