"""Paired live comparison of two versions on the same labelled events.

Each version decides at its own threshold. A pair is discordant when one version is
right and the other wrong; only those carry evidence (McNemar). Under the null (the
versions are equally good) each discordant pair goes either way with probability 1/2,
whatever the other pairs do.

**Per class (the default).** Positives' pairs and negatives' pairs are tested apart,
each by its own martingale, and the evidence is their mean (a mean of e-values is an
e-value): a version clearly worse on either class loses, however the other class goes.
Unweighted, fraud's few positives drown in its many negatives, and noise on the
negatives hides a loss on the positives; class-balanced (pairs weighted by 1 / their
class's size: the difference of balanced error rates) lets a version flag four times
as much ham as long as it catches as much spam, which is the emails target. Measured
by ``python -m bench.monitor_sim policy`` (200 seeded replays each): a version at a
threshold that misses half the positives is rolled back in 200 of 200 replays per
class and balanced (unweighted: 180 of 200 emails, 0 of 200 fraud); one that flags
3.7 times the ham (emails) or 1.6 times the false alarms (fraud) at the same recall
is rolled back 200 of 200 per class, 10 and 0 of 200 balanced, 0 unweighted; an
equally good emails refit 0 of 200 per class (4 balanced); the same model 0 of 200 in
every way. ``balanced`` stays available (``weighting``) for a domain that accepts
such trades.

**Anytime-valid.** The monitor looks at every evaluation point and decides as soon as
the evidence suffices, so a fixed-sample test would be looked at many times and its
error rate would grow with the looks. Instead the evidence is a betting martingale, a
uniform mixture over bets lambda of prod(1 + lambda * w_i * s_i) (s_i = +1 when the
new version is the one wrong, w_i the pair's weight: 1, or scaled to at most 1 when
balanced). Under the
null its expectation is at most 1 at every look, so by Ville's inequality it ever
reaches 1 / alpha with probability at most alpha: any number of looks, at any times,
with no spending schedule to plan (alpha spending needs the number and timing of looks
in advance, and a probation's positives come when they come). The product depends only
on the counts of the four kinds of discordant pair, so callers keep those counts
(``PairedCounts``, additive over batches) from the start of the comparison and the
order of the events does not matter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

Outcome = Literal["loss", "win", "undecided"]
Weighting = Literal["balanced", "per_class"]
DEFAULT_WEIGHTING: Weighting = "per_class"
# The bets mixed over (a uniform prior on this grid): small bets grow slowly but
# survive noise; large ones win fast on a clear difference.
LAMBDAS = np.linspace(0.025, 0.975, 39)
METHOD = "McNemar betting martingale, uniform mixture over lambda, Ville"


@dataclass(frozen=True)
class PairedCounts:
    """Labelled events of each class and the discordant pairs among them.

    ``pos_new_wrong``: positives the new version misses and the old one catches;
    ``pos_old_wrong`` the reverse; the same for negatives (false alarms).
    """

    positives: int = 0
    negatives: int = 0
    pos_new_wrong: int = 0
    pos_old_wrong: int = 0
    neg_new_wrong: int = 0
    neg_old_wrong: int = 0

    def __add__(self, other: PairedCounts) -> PairedCounts:
        mine, theirs = asdict(self), asdict(other)
        return PairedCounts(**{k: mine[k] + theirs[k] for k in mine})

    @property
    def discordant(self) -> int:
        """Pairs where exactly one version is right."""
        return self.pos_new_wrong + self.pos_old_wrong + self.neg_new_wrong + self.neg_old_wrong

    def weights(self) -> tuple[float, float]:
        """(positive, negative) pair weights: 1 / class size, scaled so the larger is 1."""
        if not self.positives or not self.negatives:
            return (1.0, 1.0)
        smaller = min(self.positives, self.negatives)
        return (smaller / self.positives, smaller / self.negatives)


@dataclass(frozen=True)
class PairedVerdict:
    """What the comparison says, with the evidence to record in the registry history."""

    outcome: Outcome
    e_loss: float  # the martingale for "the new version is worse"
    e_win: float  # and for "it is better"
    counts: PairedCounts
    alpha: float
    min_discordant: int
    weighting: Weighting = DEFAULT_WEIGHTING

    @property
    def evidence(self) -> dict[str, Any]:
        """The figures behind the outcome, JSON-ready."""
        w_pos, w_neg = self.counts.weights()
        return {
            "outcome": self.outcome,
            "method": METHOD,
            "weighting": self.weighting,
            "n": self.counts.positives + self.counts.negatives,
            **asdict(self.counts),
            "discordant": self.counts.discordant,
            "weight_positive": round(w_pos, 6),
            "weight_negative": round(w_neg, 6),
            "e_loss": round(self.e_loss, 4),
            "e_win": round(self.e_win, 4),
            "threshold_e": round(1 / self.alpha, 4),
            "alpha": self.alpha,
            "min_discordant": self.min_discordant,
        }


def correct(y: np.ndarray[Any, Any], scores: np.ndarray[Any, Any], threshold: float) -> Any:
    """Whether each decision (``score >= threshold``) matches its label."""
    return (np.asarray(scores) >= threshold) == np.asarray(y).astype(bool)


def paired_counts(
    y: np.ndarray[Any, Any],
    new_scores: np.ndarray[Any, Any],
    new_threshold: float,
    old_scores: np.ndarray[Any, Any],
    old_threshold: float,
) -> PairedCounts:
    """The counts of ``PairedCounts`` over these events (one score of each version each)."""
    truth = np.asarray(y).astype(bool)
    new_ok = correct(truth, new_scores, new_threshold)
    old_ok = correct(truth, old_scores, old_threshold)
    new_only_wrong, old_only_wrong = ~new_ok & old_ok, new_ok & ~old_ok
    positives = int(np.count_nonzero(truth))
    return PairedCounts(
        positives=positives,
        negatives=len(truth) - positives,
        pos_new_wrong=int(np.count_nonzero(new_only_wrong & truth)),
        pos_old_wrong=int(np.count_nonzero(old_only_wrong & truth)),
        neg_new_wrong=int(np.count_nonzero(new_only_wrong & ~truth)),
        neg_old_wrong=int(np.count_nonzero(old_only_wrong & ~truth)),
    )


def _mixture(kinds: list[tuple[float, int]]) -> float:
    """The uniform mixture over ``LAMBDAS`` of prod(1 + lambda * x) over pairs whose
    signed weight x and count are ``kinds``."""
    table = np.array(kinds, dtype=np.float64)
    log_growth = np.log1p(np.outer(LAMBDAS, table[:, 0])) @ table[:, 1]
    top = float(log_growth.max())
    return float(np.exp(top) * np.mean(np.exp(log_growth - top)))


def e_value(counts: PairedCounts, *, against_new: bool, weighting: Weighting = "balanced") -> float:
    """The mixture martingale's value for "the new version is worse" (``against_new``)
    or "better"; at most 1 / alpha with probability 1 - alpha under the null.

    ``per_class``: the mean of one martingale on the positives' pairs and one on the
    negatives' (a mean of e-values is one), so a clear loss in either class counts.
    """
    sign = 1.0 if against_new else -1.0
    if weighting == "per_class":
        pos = _mixture([(sign, counts.pos_new_wrong), (-sign, counts.pos_old_wrong)])
        neg = _mixture([(sign, counts.neg_new_wrong), (-sign, counts.neg_old_wrong)])
        return (pos + neg) / 2
    w_pos, w_neg = counts.weights()
    return _mixture(
        [
            (w_pos * sign, counts.pos_new_wrong),
            (-w_pos * sign, counts.pos_old_wrong),
            (w_neg * sign, counts.neg_new_wrong),
            (-w_neg * sign, counts.neg_old_wrong),
        ]
    )


def decide(
    counts: PairedCounts,
    *,
    alpha: float,
    min_discordant: int,
    weighting: Weighting = DEFAULT_WEIGHTING,
) -> PairedVerdict:
    """Loss or win once its martingale reaches 1 / alpha over at least ``min_discordant``
    discordant pairs; undecided until then.

    Both at once (possible ``per_class``: the new version worse on one class and better
    on the other) is a trade-off of operating points, settled by the class-balanced test
    (:func:`_settle`): a loss only if the new version is also worse with both classes
    weighed alike. The shift case showed why: a version flagging 0.1 % of the new
    source's ham was rolled back to one flagging 46 %, per-class e_loss 97,156 against
    e_win 15,120,595, because the old one caught more spam by flagging nearly everything.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), not {alpha}")
    e_loss = e_value(counts, against_new=True, weighting=weighting)
    e_win = e_value(counts, against_new=False, weighting=weighting)
    outcome: Outcome = "undecided"
    if counts.discordant >= min_discordant:
        loss, win = e_loss >= 1 / alpha, e_win >= 1 / alpha
        if loss and win:
            outcome = _settle(counts, alpha)
        elif loss:
            outcome = "loss"
        elif win:
            outcome = "win"
    return PairedVerdict(outcome, e_loss, e_win, counts, alpha, min_discordant, weighting)


def _settle(counts: PairedCounts, alpha: float) -> Outcome:
    """A trade-off between the classes, decided by the class-balanced martingales (a
    further test on the same pairs: it can only make a loss or win rarer)."""
    if e_value(counts, against_new=True, weighting="balanced") >= 1 / alpha:
        return "loss"
    if e_value(counts, against_new=False, weighting="balanced") >= 1 / alpha:
        return "win"
    return "undecided"


def compare(
    y: np.ndarray[Any, Any],
    new_scores: np.ndarray[Any, Any],
    new_threshold: float,
    old_scores: np.ndarray[Any, Any],
    old_threshold: float,
    *,
    alpha: float,
    min_discordant: int,
    weighting: Weighting = DEFAULT_WEIGHTING,
) -> PairedVerdict:
    """The paired verdict on these events: every labelled event since the comparison
    began (anytime-valid only then; a sliding window would forget evidence and restart
    the bet without saying so)."""
    counts = paired_counts(y, new_scores, new_threshold, old_scores, old_threshold)
    return decide(counts, alpha=alpha, min_discordant=min_discordant, weighting=weighting)
