"""``inferloop evaluate`` and ``inferloop replay``: the domains on the real data sets."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from inferloop.cli import settings_of
from inferloop.cli.output import json_option, print_json, print_table
from inferloop.settings import DOMAINS, Domain

DATASET_NAMES = ("sms", "spamassassin", "creditcard")
METRIC_ORDER = ("precision", "recall", "f1", "mcc", "roc_auc", "auprc", "fpr")


def _check_dataset(domain: Domain, dataset: str) -> None:
    from inferloop.domains.datasets import DATASETS

    if DATASETS[dataset] != domain:
        raise click.BadParameter(
            f"{dataset!r} is a data set of the {DATASETS[dataset]} domain, not {domain}",
            param_hint="--dataset",
        )


def parse_rate(value: str | None) -> float | None:
    """``"500/s"``, ``"500"`` or ``"max"`` (None: as fast as possible)."""
    if value is None or value.strip().lower() in ("max", "unlimited"):
        return None
    number = value.strip().lower().removesuffix("/s")
    try:
        rate = float(number)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not N/s or 'max'", param_hint="--rate") from None
    if not math.isfinite(rate) or rate <= 0:
        raise click.BadParameter(f"{value!r} must be a positive rate", param_hint="--rate")
    return rate


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"


@click.command()
@click.argument("domain", type=click.Choice(DOMAINS))
@click.option("--dataset", type=click.Choice(DATASET_NAMES), required=True, help="Data set.")
@click.option(
    "--holdout-fraction",
    type=click.FloatRange(0.01, 0.9),
    default=0.2,
    show_default=True,
    help="The newest share held out for judging.",
)
@click.option(
    "--folds",
    type=click.IntRange(2, 20),
    default=5,
    show_default=True,
    help="Time-ordered folds for the out-of-fold threshold.",
)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option(
    "--max-ham-flagged",
    type=click.FloatRange(0.0001, 0.5),
    default=None,
    help="emails: the share of ham the threshold may flag (default 0.005).",
)
@click.option(
    "--min-fraud-recall",
    type=click.FloatRange(0.01, 1.0),
    default=None,
    help="transactions: the fraud recall the threshold must keep (default 0.8).",
)
@json_option
@click.pass_context
def evaluate(
    ctx: click.Context,
    /,
    *,
    domain: Domain,
    dataset: str,
    holdout_fraction: float,
    folds: int,
    seed: int,
    max_ham_flagged: float | None,
    min_fraud_recall: float | None,
    as_json: bool,
) -> None:
    """Train DOMAIN's model on the older part of a data set and judge it on the newest."""
    from inferloop.domains import DomainSpec, EmailsDomain, TransactionsDomain, get_domain
    from inferloop.domains.evaluation import evaluate as run_evaluation

    _check_dataset(domain, dataset)
    settings = settings_of(ctx)
    spec: DomainSpec = get_domain(domain)
    if max_ham_flagged is not None and domain == "emails":
        spec = EmailsDomain(max_ham_flagged=max_ham_flagged)
    if min_fraud_recall is not None and domain == "transactions":
        spec = TransactionsDomain(min_fraud_recall=min_fraud_recall)
    result = run_evaluation(
        dataset,
        settings.data_dir,
        holdout_fraction=holdout_fraction,
        seed=seed,
        folds=folds,
        fit_threads=settings.retrain.fit_threads,
        spec=spec,
    )
    report: dict[str, Any] = {
        "dataset": result.dataset,
        "domain": result.domain,
        "loaded": result.loaded,
        "duplicates_removed": result.duplicates,
        "train": result.train,
        "train_positives": result.train_positives,
        "holdout": result.holdout,
        "holdout_positives": result.holdout_positives,
        "threshold": result.threshold,
        "holdout_metrics": result.metrics,
        "train_oof_metrics": result.oof_metrics,
        "fit_s": round(result.fit_s, 2),
        "scoring_events_per_s": round(result.scoring.events_per_s, 1),
        "scoring": {
            "events": result.scoring.events,
            "batch_size": result.scoring.batch_size,
            "validate_s": round(result.scoring.validate_s, 3),
            "rows_s": round(result.scoring.rows_s, 3),
            "score_s": round(result.scoring.score_s, 3),
            "json_loads_baseline_s": round(result.scoring.json_loads_s, 3),
            "scorer": result.scoring.scorer,
        },
        "params": result.params,
    }
    if as_json:
        print_json(report)
        return
    click.echo(
        f"{result.dataset} ({result.domain}): {result.loaded} loaded, {result.duplicates} "
        f"duplicates removed; train {result.train} ({result.train_positives} positive), "
        f"newest {holdout_fraction:.0%} held out: {result.holdout} "
        f"({result.holdout_positives} positive)"
    )
    extras = [k for k in result.metrics if k not in METRIC_ORDER and k.startswith(("f1_", "p"))]
    names = [*METRIC_ORDER, *[k for k in extras if k != "positives"]]
    rows = [
        {
            "metric": name,
            "holdout": _fmt(result.metrics[name]),
            "train out-of-fold": _fmt(result.oof_metrics.get(name, math.nan)),
        }
        for name in names
    ]
    print_table(
        rows,
        ["metric", "holdout", "train out-of-fold"],
        title=f"at threshold {result.threshold:.6f}",
    )
    click.echo(f"threshold chosen for {result.params['threshold_target']} on the training part")
    rate = result.scoring
    click.echo(
        f"scoring rate: {rate.events_per_s:,.0f} events/s on one core (batches of "
        f"{rate.batch_size}, JSON parsing included, {rate.events} events); parts alone: "
        f"validate {_per_s(rate.events, rate.validate_s)}, "
        f"rows {_per_s(rate.events, rate.rows_s)}, "
        f"score {_per_s(rate.events, rate.score_s)}; baseline in the same run: json.loads "
        f"alone {_per_s(rate.events, rate.json_loads_s)}; fit {result.fit_s:.1f}s"
    )


def _per_s(events: int, seconds: float) -> str:
    return f"{events / seconds:,.0f}/s" if seconds else "n/a"


@click.command()
@click.argument("domain", type=click.Choice(DOMAINS))
@click.option("--dataset", type=click.Choice(DATASET_NAMES), required=True, help="Data set.")
@click.option(
    "--rate",
    "rate_text",
    default=None,
    help="Events per second, e.g. 500/s; 'max' (the default) sends as fast as possible.",
)
@click.option(
    "--label-delay-s",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds from an event to its label [INFERLOOP_REPLAY__LABEL_DELAY_S].",
)
@click.option(
    "--label-fraction",
    type=click.FloatRange(0, 1),
    default=None,
    help="Share of events whose label comes back [INFERLOOP_REPLAY__LABEL_FRACTION].",
)
@click.option(
    "--labels-only",
    is_flag=True,
    help="Publish only labelled examples, at once: history to bootstrap a model.",
)
@click.option(
    "--start-fraction",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Start this far into the time-ordered data set.",
)
@click.option(
    "--end-fraction",
    type=click.FloatRange(0, 1),
    default=1.0,
    show_default=True,
    help="Stop this far into the time-ordered data set.",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many.")
@click.option(
    "--create-topics/--no-create-topics",
    default=True,
    show_default=True,
    help="Create the domain's topics when missing.",
)
@click.option("--progress/--no-progress", default=True, show_default=True)
@json_option
@click.pass_context
def replay(
    ctx: click.Context,
    /,
    *,
    domain: Domain,
    dataset: str,
    rate_text: str | None,
    label_delay_s: float | None,
    label_fraction: float | None,
    labels_only: bool,
    start_fraction: float,
    end_fraction: float,
    limit: int | None,
    create_topics: bool,
    progress: bool,
    as_json: bool,
) -> None:
    """Publish a data set's events in event-time order, and their labels after a delay."""
    from inferloop.domains.datasets import load_dataset
    from inferloop.domains.replay import ReplayPlan, selection
    from inferloop.domains.replay import replay as run_replay
    from inferloop.topics import create_domain_topics

    _check_dataset(domain, dataset)
    settings = settings_of(ctx)
    plan = ReplayPlan.from_settings(
        settings.replay,
        rate_per_s=parse_rate(rate_text) if rate_text is not None else None,
        label_delay_s=label_delay_s,
        label_fraction=label_fraction,
        labels_only=labels_only,
        start_fraction=start_fraction,
        end_fraction=end_fraction,
        limit=limit,
    )
    if create_topics:
        create_domain_topics(settings, domain)
    data = load_dataset(dataset, settings.data_dir)
    total = len(selection(data, plan))
    if progress and not as_json:
        with _progress_bar(total, labels_only) as callback:
            summary = run_replay(settings, data, plan, progress=callback)
    else:
        summary = run_replay(settings, data, plan)
    if as_json:
        print_json(summary)
        return
    print_table(
        [
            {"what": "events", "topic": summary.events_topic, "sent": summary.events_sent},
            {
                "what": "labels",
                "topic": summary.labels_topic,
                "sent": summary.labels_sent,
                "withheld": summary.labels_withheld,
            },
        ],
        ["what", "topic", "sent", "withheld"],
        title=f"replayed {summary.dataset}",
    )
    click.echo(
        f"event times {summary.first_event_time} .. {summary.last_event_time}; "
        f"{summary.elapsed_s:.1f}s, {summary.events_per_s:,.0f} events/s"
    )


@contextmanager
def _progress_bar(total: int, labels_only: bool) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar over events, with the label count and the rate."""

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>9,.0f}/s"),
        TextColumn("labels {task.fields[labels]:,}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    task = bar.add_task("labels" if labels_only else "events", total=total, rate=0.0, labels=0)

    def update(done: int, labels: int) -> None:
        elapsed = bar.tasks[0].elapsed or 0.0
        bar.update(task, completed=done, labels=labels, rate=done / elapsed if elapsed else 0.0)

    with bar:
        yield update


COMMANDS = (evaluate, replay)
