"""The paired comparison: losses and wins with evidence, nothing from noise, balanced classes."""

from __future__ import annotations

import numpy as np
import pytest

from inferloop.monitor.paired import PairedCounts, compare, decide, paired_counts


def _stream(rng: np.random.Generator, n: int, prevalence: float) -> np.ndarray:
    return (rng.random(n) < prevalence).astype(int)


def _scores(rng: np.random.Generator, y: np.ndarray, separation: float) -> np.ndarray:
    return 1 / (1 + np.exp(-(rng.normal(size=len(y)) + separation * (2 * y - 1))))


def test_a_clearly_worse_version_is_a_loss_with_its_evidence() -> None:
    rng = np.random.default_rng(0)
    y = _stream(rng, 500, 0.2)
    old, new = _scores(rng, y, 2.5), _scores(rng, y, 0.3)
    verdict = compare(y, new, 0.5, old, 0.5, alpha=0.05, min_discordant=10)
    assert verdict.outcome == "loss"
    assert verdict.evidence["e_loss"] >= 20
    assert verdict.evidence["n"] == 500
    assert verdict.evidence["positives"] == int(y.sum())
    # The same comparison the other way round is a win.
    assert compare(y, old, 0.5, new, 0.5, alpha=0.05, min_discordant=10).outcome == "win"


def test_the_same_scores_decide_nothing() -> None:
    rng = np.random.default_rng(1)
    y = _stream(rng, 1000, 0.1)
    scores = _scores(rng, y, 1.0)
    verdict = compare(y, scores, 0.5, scores, 0.5, alpha=0.05, min_discordant=1)
    assert verdict.outcome == "undecided"
    assert verdict.e_loss == pytest.approx(1.0)
    assert verdict.counts.discordant == 0


def test_too_few_discordant_pairs_decide_nothing() -> None:
    counts = PairedCounts(positives=20, negatives=20, pos_new_wrong=12)
    assert decide(counts, alpha=0.05, min_discordant=12).outcome == "loss"
    assert decide(counts, alpha=0.05, min_discordant=13).outcome == "undecided"


def test_equal_versions_looked_at_often_rarely_lose() -> None:
    # Two equally good versions (independent noise), looked at every 20 labelled events
    # up to 2,000: Ville's inequality bounds the share of runs ever called a loss by alpha.
    rng = np.random.default_rng(2)
    runs, losses = 300, 0
    for _ in range(runs):
        y = _stream(rng, 2000, 0.2)
        a, b = _scores(rng, y, 1.0), _scores(rng, y, 1.0)
        counts = PairedCounts()
        for start in range(0, 2000, 20):
            part = slice(start, start + 20)
            counts = counts + paired_counts(y[part], a[part], 0.5, b[part], 0.5)
            if decide(counts, alpha=0.05, min_discordant=10).outcome == "loss":
                losses += 1
                break
    assert losses / runs <= 0.05


def test_balanced_pairs_are_weighted_by_their_class() -> None:
    # Fraud-like: the new version catches 4 more of 10 frauds and raises 30 more false
    # alarms among 5,800 legitimate payments. Its balanced error is lower: no loss.
    counts = PairedCounts(
        positives=10, negatives=5800, pos_old_wrong=4, neg_new_wrong=30, neg_old_wrong=0
    )
    verdict = decide(counts, alpha=0.05, min_discordant=10, weighting="balanced")
    assert verdict.outcome != "loss"
    assert verdict.e_win > verdict.e_loss
    # Counted unweighted (as if the classes were the same size) it would be a loss.
    unweighted = PairedCounts(positives=1, negatives=1, pos_old_wrong=4, neg_new_wrong=30)
    assert decide(unweighted, alpha=0.05, min_discordant=10).outcome == "loss"


def test_per_class_a_clear_loss_on_either_class_is_a_loss() -> None:
    # Emails-like: the same spam caught, but 30 more of 3,600 hams flagged (and 2 fewer):
    # a loss at the emails target, which class-balanced weighting dilutes away.
    counts = PairedCounts(
        positives=500, negatives=3600, pos_new_wrong=10, pos_old_wrong=10,
        neg_new_wrong=32, neg_old_wrong=2,
    )  # fmt: skip
    assert decide(counts, alpha=0.05, min_discordant=10).outcome == "loss"
    assert decide(counts, alpha=0.05, min_discordant=10).evidence["weighting"] == "per_class"
    balanced = decide(counts, alpha=0.05, min_discordant=10, weighting="balanced")
    assert balanced.outcome == "undecided"


def test_a_trade_off_between_the_classes_is_settled_by_the_balanced_test() -> None:
    # The shift case's rollback: the new version misses spam the old one caught only by
    # flagging nearly every mail, and flags almost no ham where the old one flagged half.
    tradeoff = PairedCounts(
        positives=300, negatives=1900, pos_new_wrong=40, pos_old_wrong=2,
        neg_new_wrong=1, neg_old_wrong=900,
    )  # fmt: skip
    verdict = decide(tradeoff, alpha=0.05, min_discordant=10)
    assert verdict.e_loss >= 20
    assert verdict.e_win >= 20
    assert verdict.outcome == "win"
    # A mis-thresholded version: half the positives missed for a few false alarms fewer.
    worse = PairedCounts(
        positives=300, negatives=1900, pos_new_wrong=120, pos_old_wrong=0,
        neg_new_wrong=0, neg_old_wrong=30,
    )  # fmt: skip
    verdict = decide(worse, alpha=0.05, min_discordant=10)
    assert verdict.e_win >= 20
    assert verdict.outcome == "loss"
    even = PairedCounts(
        positives=300, negatives=1900, pos_new_wrong=40, pos_old_wrong=2,
        neg_new_wrong=1, neg_old_wrong=250,
    )  # fmt: skip
    assert decide(even, alpha=0.05, min_discordant=10).outcome == "undecided"


def test_counts_add_over_batches() -> None:
    rng = np.random.default_rng(3)
    y = _stream(rng, 300, 0.3)
    a, b = _scores(rng, y, 1.0), _scores(rng, y, 0.5)
    whole = paired_counts(y, a, 0.5, b, 0.4)
    parts = paired_counts(y[:100], a[:100], 0.5, b[:100], 0.4) + paired_counts(
        y[100:], a[100:], 0.5, b[100:], 0.4
    )
    assert parts == whole
    assert whole.positives + whole.negatives == 300


def test_alpha_must_be_a_probability() -> None:
    with pytest.raises(ValueError, match="alpha"):
        decide(PairedCounts(), alpha=1.5, min_discordant=1)
