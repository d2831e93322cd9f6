"""The promotion gate's decisions on small, hand-made holdouts."""

from __future__ import annotations

import dataclasses

import numpy as np

from inferloop.domains import get_domain, training
from inferloop.domains.metrics import ThresholdTarget, threshold_at_fpr
from inferloop.retrain.bootstrap import ModelScores
from inferloop.retrain.gate import GUARDRAILS, Contender, GateConfig, Guardrail, decide

SPEC = get_domain("transactions")
EMAILS = get_domain("emails")
HAM_TARGET = ThresholdTarget(error_class=0, rate=0.005)


def _config(**changes: object) -> GateConfig:
    base: dict[str, object] = {
        "primary_metric": "auprc",
        "floor": 0.7,
        "margin": 0.0,
        "min_positives": 30,
        "rounds": 200,
        "seed": 1,
        "guardrails": GUARDRAILS["transactions"],
    }
    base.update(changes)
    return GateConfig(**base)  # type: ignore[arg-type]


def _holdout(n: int = 2000, positives: int = 200, seed: int = 0) -> np.ndarray:
    y = np.zeros(n, dtype=np.int8)
    y[np.random.default_rng(seed).choice(n, positives, replace=False)] = 1
    return y


def _model(y: np.ndarray, skill: float, seed: int, threshold: float = 0.5) -> Contender:
    """Scores that separate the classes by ``skill`` (0: noise, larger: better)."""
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=len(y)) + skill * y
    scores = 1.0 / (1.0 + np.exp(-raw))
    return Contender(ModelScores(scores, threshold), SPEC.metrics(y, scores, threshold))


def test_first_model_is_promoted_when_it_clears_the_floor() -> None:
    y = _holdout()
    result = decide(_config(), y, _model(y, 4.0, 1), None)
    assert result.decision == "promote"
    assert "first model" in result.reason


def test_below_the_floor_is_rejected_with_the_figures() -> None:
    y = _holdout()
    result = decide(_config(), y, _model(y, 0.0, 1), None)
    assert result.decision == "reject"
    assert "below the floor 0.7000" in result.reason


def test_too_few_positives_is_insufficient_evidence_not_a_coin_flip() -> None:
    y = _holdout(positives=18)
    result = decide(_config(), y, _model(y, 6.0, 1), _model(y, 1.0, 2))
    assert result.decision == "insufficient_evidence"
    assert result.positives == 18


def test_a_clear_win_is_promoted_and_a_tie_is_not() -> None:
    y = _holdout()
    champion = _model(y, 2.5, 2)
    win = decide(_config(), y, _model(y, 4.5, 1), champion)
    same = decide(_config(), y, champion, champion)
    assert win.decision == "promote"
    assert win.delta_p05 is not None
    assert win.delta_p05 > 0
    assert same.decision == "reject"
    assert "no real win" in same.reason


def test_the_margin_must_be_cleared_by_the_lower_percentile() -> None:
    y = _holdout()
    champion, candidate = _model(y, 2.5, 2), _model(y, 4.5, 1)
    result = decide(_config(margin=0.5), y, candidate, champion)
    assert result.decision == "reject"
    assert result.delta is not None
    assert result.delta_p05 is not None
    assert result.delta_p05 <= 0.5


def test_a_broken_guardrail_rejects_a_better_primary_metric() -> None:
    # A guardrail on a threshold metric, given explicitly: the mechanism still works.
    y = _holdout()
    champion = _model(y, 2.5, 2, threshold=0.5)
    strict = _model(y, 4.5, 1, threshold=0.995)
    result = decide(_config(guardrails=(Guardrail("recall", True, 0.05),)), y, strict, champion)
    assert result.decision == "reject"
    assert result.reason.startswith("guardrail recall")


def test_a_threshold_that_missed_no_longer_refuses_a_better_ranking_model() -> None:
    # The domain's guardrails are ranking only: a better ranking with a threshold that
    # catches almost no fraud is promoted; the threshold is judged apart (the job).
    y = _holdout()
    champion = _model(y, 2.5, 2, threshold=0.5)
    strict = _model(y, 4.5, 1, threshold=0.995)
    assert strict.metric("recall") < champion.metric("recall") - 0.05
    result = decide(_config(), y, strict, champion)
    assert result.decision == "promote"


def test_overlapping_or_unscorable_champion_cannot_promote() -> None:
    y = _holdout()
    champion, candidate = _model(y, 2.5, 2), _model(y, 4.5, 1)
    overlap = decide(_config(), y, candidate, champion, not_comparable="holdout overlaps")
    broken = decide(_config(), y, candidate, None, not_comparable="champion v3 unreadable")
    assert (overlap.decision, overlap.reason) == ("not_comparable", "holdout overlaps")
    assert (broken.decision, broken.reason) == ("not_comparable", "champion v3 unreadable")


def test_comparability_comes_before_the_floor_and_hides_the_champions_figure() -> None:
    # Below the floor and not comparable: the comparison is what is wrong, and the
    # champion's score on data it was trained on is not reported at all.
    y = _holdout()
    result = decide(
        _config(), y, _model(y, 0.0, 1), _model(y, 2.5, 2), not_comparable="holdout overlaps"
    )
    assert (result.decision, result.reason) == ("not_comparable", "holdout overlaps")
    assert result.champion is None
    assert result.delta is None


def test_comparability_comes_before_the_evidence() -> None:
    y = _holdout(positives=5)
    result = decide(
        _config(), y, _model(y, 6.0, 1), _model(y, 1.0, 2), not_comparable="holdout overlaps"
    )
    assert result.decision == "not_comparable"


def test_the_floor_comes_before_the_win() -> None:
    y = _holdout()
    champion = _model(y, 3.5, 2)
    assert champion.metric("auprc") >= 0.7
    result = decide(_config(), y, _model(y, 0.3, 1), champion)
    assert result.decision == "reject"
    assert "below the floor" in result.reason
    assert not result.champion_below_floor


def test_the_win_comes_before_the_guardrails() -> None:
    # The champion's own scores with a threshold that catches almost no fraud: no win on
    # the primary metric (threshold-free AUPRC) and a broken recall guardrail. The reason
    # is the first step that fails: no real win.
    y = _holdout()
    champion = _model(y, 2.5, 2, threshold=0.5)
    strict = Contender(
        ModelScores(champion.scores.scores, 0.995),
        SPEC.metrics(y, champion.scores.scores, 0.995),
    )
    result = decide(_config(), y, strict, champion)
    assert result.decision == "reject"
    assert result.reason.startswith("no real win")


def test_a_below_floor_champion_gives_way_to_a_candidate_that_beats_it() -> None:
    # Both below the floor (0.7 AUPRC): the floor guards a champion that meets it, not
    # one that does not; the better candidate is promoted and the domain stays flagged.
    y = _holdout()
    weak_champion, better = _model(y, 0.3, 2), _model(y, 2.0, 1)
    assert better.metric("auprc") < 0.7
    result = decide(_config(), y, better, weak_champion)
    assert result.decision == "promote"
    assert "below the floor too" in result.reason
    assert result.champion_below_floor
    # No win over the below-floor champion: rejected, the flag still up.
    same = decide(_config(), y, weak_champion, weak_champion)
    assert same.decision == "reject"
    assert same.champion_below_floor


# -- the matched operating point (emails: F1 where the same share of ham is flagged) --


def _emails_config(**changes: object) -> GateConfig:
    base: dict[str, object] = {
        "primary_metric": "f1",
        "floor": 0.0,
        "guardrails": GUARDRAILS["emails"],
        "target": HAM_TARGET,
    }
    return _config(**{**base, **changes})


def _email_model(y: np.ndarray, scores: np.ndarray, threshold: float) -> Contender:
    return Contender(ModelScores(scores, threshold), EMAILS.metrics(y, scores, threshold))


def _email_scores(y: np.ndarray, skill: float, seed: int) -> np.ndarray:
    raw = np.random.default_rng(seed).normal(size=len(y)) + skill * y
    return 1.0 / (1.0 + np.exp(-raw))


def test_matched_point_a_better_ranking_with_a_worse_threshold_wins() -> None:
    y = _holdout(n=4000, positives=1000)  # 3,000 ham: enough for 0.5 % (2,000)
    champ_scores, cand_scores = _email_scores(y, 2.5, 2), _email_scores(y, 4.0, 1)
    champion = _email_model(y, champ_scores, threshold_at_fpr(y, champ_scores, 0.005))
    # The candidate's threshold is far too strict: it catches a sliver of the spam.
    candidate = _email_model(y, cand_scores, float(np.quantile(cand_scores[y == 1], 0.97)))
    assert candidate.metric("f1") < champion.metric("f1")  # at their own thresholds
    result = decide(_emails_config(), y, candidate, champion)
    assert result.decision == "promote"
    assert result.compared.startswith("f1 at a matched operating point")
    assert result.candidate_compared is not None
    assert result.champion_compared is not None
    assert result.candidate_compared > result.champion_compared + 0.1


def test_matched_point_equal_ranking_at_different_thresholds_does_not_win() -> None:
    y = _holdout(n=4000, positives=1000)
    scores = _email_scores(y, 3.0, 1)
    # The same scores; the champion's threshold is badly placed, the candidate's well.
    champion = _email_model(y, scores, float(np.quantile(scores[y == 1], 0.9)))
    candidate = _email_model(y, scores, threshold_at_fpr(y, scores, 0.005))
    assert candidate.metric("f1") > champion.metric("f1") + 0.2  # at their own thresholds
    result = decide(_emails_config(), y, candidate, champion)
    assert result.decision == "reject"
    assert result.delta == 0.0
    assert "no real win" in result.reason


def test_a_tie_on_ranking_refreshes_a_champions_threshold_that_misses() -> None:
    y = _holdout(n=4000, positives=1000)
    scores = _email_scores(y, 3.0, 1)
    # The same ranking; the champion's threshold flags 5 % of the ham, the candidate's 0.5 %.
    champion = _email_model(y, scores, threshold_at_fpr(y, scores, 0.05))
    candidate = _email_model(y, scores, threshold_at_fpr(y, scores, 0.005))
    result = decide(_emails_config(), y, candidate, champion)
    assert result.decision == "promote"
    assert result.reason.startswith("threshold refresh")
    # The other way round: the candidate's threshold is the one that misses.
    assert decide(_emails_config(), y, champion, candidate).decision == "reject"


def test_too_few_ham_for_the_target_falls_back_to_partial_auc_then_to_no_decision() -> None:
    champion_skill, candidate_skill = 1.5, 4.0
    y = _holdout(n=800, positives=300)  # 500 ham: a partial AUC to 2 % flagged
    champion = _email_model(y, _email_scores(y, champion_skill, 2), 0.5)
    candidate = _email_model(y, _email_scores(y, candidate_skill, 1), 0.5)
    result = decide(_emails_config(), y, candidate, champion)
    assert result.compared.startswith("partial ROC-AUC to 2.00% flagged")
    assert result.decision == "promote"
    tiny = _holdout(n=120, positives=80)  # 40 ham: not even that
    champion = _email_model(tiny, _email_scores(tiny, champion_skill, 2), 0.5)
    candidate = _email_model(tiny, _email_scores(tiny, candidate_skill, 1), 0.5)
    result = decide(_emails_config(), tiny, candidate, champion)
    assert result.decision == "insufficient_evidence"
    assert "partial AUC needs" in result.reason


# -- the threshold's window: the newest out-of-fold scores, on a shifted fixture --


def _drifting_ham(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold labels and scores in time order; the ham's scores drift upwards."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int8)
    drift = np.linspace(0.0, 1.5, n)  # the ham looks more and more like spam
    scores = np.where(y == 1, rng.normal(4.0, 1.0, n), rng.normal(0.0, 1.0, n) + drift)
    return y, scores


def test_the_calibration_window_meets_the_target_on_the_newest_data_and_pooling_does_not() -> None:
    y, scores = _drifting_ham(20_000, seed=3)
    start = training.calibration_start(y, HAM_TARGET)
    window_ham = int(np.count_nonzero(y[start:] == 0))
    assert window_ham == HAM_TARGET.needed == 2000
    window = EMAILS.choose_threshold(y[start:], scores[start:])
    pooled = EMAILS.choose_threshold(y, scores)
    # The newest data: ham as it is now, at the end of the drift.
    newest_ham = np.random.default_rng(4).normal(1.5, 1.0, 100_000)
    assert float(np.mean(newest_ham >= window)) <= 2 * HAM_TARGET.rate
    assert float(np.mean(newest_ham >= pooled)) > 4 * HAM_TARGET.rate


def test_too_little_out_of_fold_ham_pools_every_fold() -> None:
    y, _ = _drifting_ham(1000, seed=3)
    assert training.calibration_start(y, HAM_TARGET) == 0


# -- a candidate whose threshold was re-derived with the holdout (in-sample there) --


def _in_sample(model: Contender, f1: float | None = None) -> Contender:
    metrics = dict(model.metrics) if f1 is None else {**model.metrics, "f1": f1}
    return dataclasses.replace(model, metrics=metrics, threshold_in_sample=True)


def test_an_in_sample_threshold_figure_does_not_clear_the_floor() -> None:
    # Before: the candidate's F1 at a threshold chosen with this holdout decided the floor.
    y = _holdout(n=4000, positives=1000)
    scores = _email_scores(y, 0.5, 1)  # a poor ranking
    model = _email_model(y, scores, 0.5)
    config = _emails_config(floor=0.7)
    trusted = dataclasses.replace(model, metrics={**model.metrics, "f1": 0.99})
    assert decide(config, y, trusted, None).decision == "promote"
    result = decide(config, y, _in_sample(model, f1=0.99), None)
    assert result.decision == "reject"
    assert "below the floor" in result.reason
    assert "matched operating point" in result.reason
    assert result.candidate < 0.7


def test_an_in_sample_threshold_is_no_threshold_refresh() -> None:
    y = _holdout(n=4000, positives=1000)
    scores = _email_scores(y, 3.0, 1)
    champion = _email_model(y, scores, threshold_at_fpr(y, scores, 0.05))
    candidate = _email_model(y, scores, threshold_at_fpr(y, scores, 0.005))
    assert decide(_emails_config(), y, candidate, champion).decision == "promote"
    result = decide(_emails_config(), y, _in_sample(candidate), champion)
    assert result.decision == "reject"
    assert "no real win" in result.reason


def test_an_in_sample_threshold_with_too_few_ham_is_judged_on_the_given_figure() -> None:
    # Too few ham for a matched point: the figure given (the job's calibration
    # threshold's, out of sample) decides the floor.
    y = _holdout(n=800, positives=300)  # 500 ham: fewer than the 2,000 of 0.5 %
    model = _email_model(y, _email_scores(y, 4.0, 1), 0.5)
    config = _emails_config(floor=0.7)
    assert decide(config, y, _in_sample(model, f1=0.9), None).decision == "promote"
    result = decide(config, y, _in_sample(model, f1=0.1), None)
    assert result.decision == "reject"
    assert "calibration threshold's, out of sample (0.1000)" in result.reason
