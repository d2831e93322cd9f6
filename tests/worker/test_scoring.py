"""One vectorised call on a good batch; the culprits alone when it raises."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pytest

from inferloop.domains import emails as em
from inferloop.domains import get_domain
from inferloop.domains.hashing import HashedTokens
from inferloop.domains.text_model import CompiledTextModel
from inferloop.registry.serving import ActiveModel
from inferloop.worker.batch import Batch, BatchProcessor, score_isolating_failures
from tests.domains.factories import email_dict, encode


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


def _fitted_emails_model(*, header_tokens: bool) -> ActiveModel:
    """An emails model fitted on synthetic mail, compiled as a worker serves it; with
    ``header_tokens`` its pipeline reads them too (as versions trained before did)."""
    spec = get_domain("emails")
    rng = np.random.default_rng(0)
    y = (rng.random(120) < 0.4).astype(np.int8)
    values = [
        encode(email_dict(i, body=("win cash now " if label else "lunch at noon ") * 3,
                          sender="promo@deals.biz" if label else "ann@corp.example"))
        for i, label in enumerate(y)
    ]  # fmt: skip
    events = spec.validate_batch(values).events
    pipeline = spec.build_pipeline(0)
    if header_tokens:
        blocks = pipeline.steps[0][1].transformers
        blocks.append(("meta", HashedTokens("whitespace"), em.META_COLUMN))
    pipeline.fit(spec.to_rows(events), y)
    scorer = spec.scorers(pipeline)[0]
    assert isinstance(scorer, CompiledTextModel)
    return ActiveModel(name="emails", version=1, digest="", threshold=0.5,
                       pipeline=pipeline, spec=spec, scorer=scorer)  # fmt: skip


class _Record(NamedTuple):
    value: bytes
    timestamp: int
    offset: int
    key: bytes | None = None
    topic: str = "emails"
    partition: int = 0
    headers: tuple[tuple[str, bytes], ...] = ()


def _processed_scores(model: ActiveModel, values: list[bytes]) -> list[float]:
    processor = BatchProcessor(model.spec, worker_name="t", max_request_size=1_048_576)
    batch = Batch([_Record(v, 1_700_000_000_000, i) for i, v in enumerate(values)], {}, {})
    processor.process(batch, model)
    assert not batch.dead_letters
    return [json.loads(p)["score"] for p in batch.predictions]


def test_a_model_that_reads_no_header_tokens_is_scored_without_building_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = _fitted_emails_model(header_tokens=False)
    values = [encode(email_dict(1000 + i, body=f"win {i} cash now")) for i in range(30)]
    want = model.pipeline.predict_proba(
        model.spec.to_rows(model.spec.validate_batch(values).events)
    )

    def no_header_tokens(event: object) -> str:
        raise AssertionError("header tokens built for a model that reads none")

    monkeypatch.setattr(em, "meta_tokens", no_header_tokens)
    assert _processed_scores(model, values) == want[:, 1].tolist()


def test_a_model_that_reads_header_tokens_gets_them() -> None:
    model = _fitted_emails_model(header_tokens=True)
    assert em.META_COLUMN in model.scorer.columns  # type: ignore[attr-defined]
    values = [encode(email_dict(1000 + i, sender=f"x{i}@deals.biz")) for i in range(30)]
    rows = model.spec.to_rows(model.spec.validate_batch(values).events)
    assert _processed_scores(model, values) == model.pipeline.predict_proba(rows)[:, 1].tolist()
