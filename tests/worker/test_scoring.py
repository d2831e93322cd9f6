"""One vectorised call on a good batch; the culprits alone when it raises."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from inferloop.worker.batch import score_isolating_failures


class CountingScorer:
    """Scores each number as number/100 and raises on any batch holding a poison one."""

    def __init__(self, poison: set[int]) -> None:
        self.poison = poison
        self.calls = 0

    def __call__(self, events: Sequence[int]) -> np.ndarray:
        self.calls += 1
        if self.poison & set(events):
            raise ValueError("poisoned")
        return np.array(events, dtype=np.float64) / 100


def test_a_clean_batch_is_scored_in_one_call() -> None:
    scorer = CountingScorer(set())
    outcome = score_isolating_failures(scorer, list(range(50)))

    assert scorer.calls == 1
    assert outcome.failures == {}
    assert np.allclose(outcome.scores, np.arange(50) / 100)


def test_poison_events_are_isolated_and_the_rest_scored() -> None:
    scorer = CountingScorer({7, 33})
    events = list(range(50))
    outcome = score_isolating_failures(scorer, events)

    assert set(outcome.failures) == {7, 33}
    assert "ValueError: poisoned" in outcome.failures[7]
    assert outcome.ok.sum() == 48
    assert np.allclose(
        outcome.scores[outcome.ok], np.array([e for e in events if e not in {7, 33}]) / 100
    )
    # Bisection, not one call per event.
    assert scorer.calls < 25


def test_a_score_that_is_not_finite_fails_its_event() -> None:
    def score(events: Sequence[int]) -> np.ndarray:
        out = np.ones(len(events))
        out[list(events).index(2)] = np.nan
        return out

    outcome = score_isolating_failures(score, [0, 1, 2, 3])
    assert set(outcome.failures) == {2}
    assert list(outcome.ok) == [True, True, False, True]
