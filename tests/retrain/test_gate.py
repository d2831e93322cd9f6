"""The promotion gate's decisions on small, hand-made holdouts."""

from __future__ import annotations

import numpy as np

from inferloop.domains import get_domain
from inferloop.retrain.bootstrap import ModelScores
from inferloop.retrain.gate import GUARDRAILS, Contender, GateConfig, decide

SPEC = get_domain("transactions")


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
    y = _holdout()
    champion = _model(y, 2.5, 2, threshold=0.5)
    # Same ranking skill, but a threshold so high that it catches almost no fraud.
    strict = _model(y, 4.5, 1, threshold=0.995)
    result = decide(_config(), y, strict, champion)
    assert result.decision == "reject"
    assert result.reason.startswith("guardrail recall")


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
    weak_champion = _model(y, 0.0, 2)
    result = decide(_config(), y, _model(y, 0.3, 1), weak_champion)
    assert result.decision == "reject"
    assert "below the floor" in result.reason


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
