"""Real fitted pipelines on synthetic events of the real domains, and the events themselves.

Rows always come from the domain's own ``to_rows``; the pipelines are real scikit-learn
pipelines (the emails one is the domain's own).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from inferloop.domains import get_domain
from inferloop.registry import ModelVersion, Registry
from tests.domains.factories import email_dict, transaction_dict

# registry_factory(settings=None, **registry_fields) -> Registry
RegistryFactory = Callable[..., Registry]
# register(trained, into=None, **fields) -> ModelVersion
Register = Callable[..., ModelVersion]

_SPAM_WORDS = ["winner", "free", "prize", "cash", "click", "offer", "credit", "urgent"]
_HAM_WORDS = ["meeting", "tuesday", "report", "lunch", "draft", "review", "project", "notes"]


@dataclass(frozen=True)
class Trained:
    """A fitted pipeline with the events it was fitted on and a few to check it with."""

    domain: str
    pipeline: Any
    events: list[dict[str, Any]]
    y: np.ndarray
    golden_events: list[dict[str, Any]]

    def rows(self, events: list[dict[str, Any]] | None = None) -> Any:
        """Rows of ``events`` (default: all) through the domain's validation and to_rows."""
        import json

        spec = get_domain(self.domain)
        batch = spec.validate_batch([json.dumps(e).encode() for e in events or self.events])
        assert not batch.rejects
        return spec.to_rows(batch.events)


def email_events(n: int, seed: int = 0) -> tuple[list[dict[str, Any]], np.ndarray]:
    """``n`` synthetic emails, about 30 % spam."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int8)
    events = []
    for i, label in enumerate(y):
        words = _SPAM_WORDS if label else _HAM_WORDS
        body = " ".join(rng.choice(words, size=12)) + " " + " ".join(rng.choice(_HAM_WORDS, 3))
        sender = "promo@deals.biz" if label else "ann@corp.example"
        events.append(email_dict(i, body=body, sender=sender))
    return events, y


def transaction_events(n: int, seed: int = 0) -> tuple[list[dict[str, Any]], np.ndarray]:
    """``n`` synthetic transactions, about 10 % fraud."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.1).astype(np.int8)
    events = []
    for i, label in enumerate(y):
        shift = {"v14": -4.0 + rng.normal(), "v4": 3.0 + rng.normal()} if label else {}
        events.append(transaction_dict(i, **shift))
    return events, y


def train_emails(n: int = 200, seed: int = 0) -> Trained:
    """The emails domain's own pipeline, fitted."""
    events, y = email_events(n, seed)
    spec = get_domain("emails")
    trained = Trained("emails", spec.build_pipeline(seed), events, y, events[:8])
    trained.pipeline.fit(trained.rows(), y)
    return trained


def train_transactions(n: int = 300, seed: int = 0, c: float = 1.0) -> Trained:
    """A small scaled logistic regression on the transactions domain's rows, fitted."""
    events, y = transaction_events(n, seed)
    pipeline = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(C=c))])
    trained = Trained("transactions", pipeline, events, y, events[:8])
    pipeline.fit(trained.rows(), y)
    return trained


def leave_trace(path: str) -> None:
    """Unpickling hook of ``TracingModel``: the proof that unpickling ran."""
    with Path(path).open("a") as handle:
        handle.write("unpickled\n")


class TracingModel:
    """A working model whose unpickling appends a line to a trace file."""

    def __init__(self, inner: Any, trace_path: str) -> None:
        self.inner = inner
        self.trace_path = trace_path

    def predict_proba(self, rows: Any) -> Any:
        """The wrapped pipeline's scores."""
        return self.inner.predict_proba(rows)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.inner, self.trace_path))


def _rebuild(inner: Any, trace_path: str) -> TracingModel:
    leave_trace(trace_path)
    return TracingModel(inner, trace_path)
