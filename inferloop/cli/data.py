"""``inferloop evaluate`` and ``inferloop replay``: the domains on the real data sets."""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from inferloop.settings import DOMAINS, Domain, Settings

if TYPE_CHECKING:
    from inferloop.domains import DomainSpec
    from inferloop.domains.replay import ReplayPlan, ReplaySummary

DATASET_NAMES = ("sms", "spamassassin", "creditcard")
PART_NAMES = ("all", "older", "newer")
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


def data_dir_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--data-dir``: where the data sets are, over INFERLOOP_DATA_DIR."""
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, exists=True, path_type=Path),
        default=None,
        help="Where the data sets are (default: INFERLOOP_DATA_DIR, or ../shared/data).",
    )(command)


def _settings_with_data_dir(ctx: click.Context, data_dir: Path | None) -> Settings:
    settings = settings_of(ctx)
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    return settings


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"


@click.command()
@click.argument("domain", type=click.Choice(DOMAINS))
@click.option(
    "--dataset",
    type=click.Choice(DATASET_NAMES),
    default=None,
    help="Data set: train on its older part, judge on its newest.",
)
@click.option(
    "--train-dataset",
    type=click.Choice(DATASET_NAMES),
    default=None,
    help="Cross-source: train on this data set (with --test-dataset, instead of --dataset).",
)
@click.option(
    "--test-dataset",
    type=click.Choice(DATASET_NAMES),
    default=None,
    help="Cross-source: judge on this data set, never trained on.",
)
@click.option(
    "--train-part",
    type=click.Choice(PART_NAMES),
    default=None,
    help="Cross-source: the training data set whole, or its older or newer half [all].",
)
@click.option(
    "--test-part",
    type=click.Choice(PART_NAMES),
    default=None,
    help="Cross-source: the test data set whole, or its older or newer half [all].",
)
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
@data_dir_option
@json_option
@click.pass_context
def evaluate(
    ctx: click.Context,
    /,
    *,
    domain: Domain,
    dataset: str | None,
    train_dataset: str | None,
    test_dataset: str | None,
    train_part: str | None,
    test_part: str | None,
    holdout_fraction: float,
    folds: int,
    seed: int,
    max_ham_flagged: float | None,
    min_fraud_recall: float | None,
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """Train DOMAIN's model on the older part of a data set and judge it on the newest,
    or (--train-dataset A --test-dataset B) train on A and judge on B, never seen."""
    from inferloop.domains.evaluation import evaluate as run_evaluation

    settings = _settings_with_data_dir(ctx, data_dir)
    spec = _spec(domain, max_ham_flagged, min_fraud_recall)
    if _cross_source(ctx, dataset, train_dataset, test_dataset):
        sides = (train_dataset or "", train_part or "all", test_dataset or "", test_part or "all")
        _evaluate_cross(domain, sides, settings, spec, seed=seed, folds=folds, as_json=as_json)
        return
    assert dataset is not None  # _cross_source refuses neither
    _check_dataset(domain, dataset)
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


def _spec(
    domain: Domain, max_ham_flagged: float | None, min_fraud_recall: float | None
) -> DomainSpec:
    from inferloop.domains import EmailsDomain, TransactionsDomain, get_domain

    if max_ham_flagged is not None and domain == "emails":
        return EmailsDomain(max_ham_flagged=max_ham_flagged)
    if min_fraud_recall is not None and domain == "transactions":
        return TransactionsDomain(min_fraud_recall=min_fraud_recall)
    return get_domain(domain)


_CROSS_ONLY = ("train_part", "test_part")
_SINGLE_ONLY = ("holdout_fraction",)


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)


def _cross_source(
    ctx: click.Context, dataset: str | None, train: str | None, test: str | None
) -> bool:
    """Whether the options ask for a cross-source run; a UsageError for a bad mix."""
    cross = train is not None or test is not None
    if cross and dataset is not None:
        raise click.UsageError("--dataset or --train-dataset/--test-dataset, not both")
    if cross and (train is None or test is None):
        raise click.UsageError("a cross-source run needs both --train-dataset and --test-dataset")
    if not cross and dataset is None:
        raise click.UsageError("give --dataset, or --train-dataset and --test-dataset")
    wrong = _SINGLE_ONLY if cross else _CROSS_ONLY
    for name in wrong:
        if _given(ctx, name):
            flag = "--" + name.replace("_", "-")
            other = "--dataset" if cross else "--train-dataset/--test-dataset"
            raise click.UsageError(f"{flag} applies only with {other}")
    return cross


def _evaluate_cross(
    domain: Domain,
    sides: tuple[str, str, str, str],
    settings: Settings,
    spec: DomainSpec,
    *,
    seed: int,
    folds: int,
    as_json: bool,
) -> None:
    from inferloop.domains.cross_source import CrossSourceError, check_sides, cross_evaluate

    train, train_part, test, test_part = sides
    try:
        found = check_sides(train, train_part, test, test_part)  # type: ignore[arg-type]
    except CrossSourceError as exc:
        raise click.BadParameter(str(exc), param_hint="--train-dataset/--test-dataset") from None
    if found != domain:
        raise click.BadParameter(
            f"{train!r} and {test!r} are data sets of the {found} domain, not {domain}",
            param_hint="--train-dataset/--test-dataset",
        )
    result = cross_evaluate(
        train,
        test,
        settings.data_dir,
        train_part=train_part,  # type: ignore[arg-type]
        test_part=test_part,  # type: ignore[arg-type]
        seed=seed,
        folds=folds,
        fit_threads=settings.retrain.fit_threads,
        spec=spec,
    )
    if as_json:
        print_json(asdict(result))
        return
    click.echo(
        f"{domain}: trained on {result.train.label} ({result.train.examples} examples, "
        f"{result.train.positives} positive), judged on {result.test.label} "
        f"({result.test.examples} examples, {result.test.positives} positive), never trained on"
    )
    names = [*METRIC_ORDER, *[k for k in result.metrics if k.startswith("f1_")]]
    rows = [
        {
            "metric": "ham flagged (fpr)" if name == "fpr" and domain == "emails" else name,
            result.test.label: _fmt(result.metrics[name]),
            f"{result.train.label} out-of-fold": _fmt(result.oof_metrics.get(name, math.nan)),
        }
        for name in names
    ]
    columns = ["metric", result.test.label, f"{result.train.label} out-of-fold"]
    print_table(rows, columns, title=f"at threshold {result.threshold:.6f}")
    click.echo(f"threshold chosen for {result.params['threshold_target']} on the training side")


@click.command()
@click.argument("domain", type=click.Choice(DOMAINS))
@click.option(
    "--dataset",
    type=click.Choice(DATASET_NAMES),
    default=None,
    help="Data set (required unless --resume).",
)
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
    "--label-policy",
    type=click.Choice(["all", "feedback"]),
    default=None,
    help="all: --label-fraction of every event; feedback: positives are reported, "
    "negatives only as appealed flags [INFERLOOP_REPLAY__LABEL_POLICY, default all].",
)
@click.option(
    "--positive-report-share",
    type=click.FloatRange(0, 1),
    default=None,
    help="feedback: share of positives reported [INFERLOOP_REPLAY__POSITIVE_REPORT_SHARE, 1.0].",
)
@click.option(
    "--false-positive-report-share",
    type=click.FloatRange(0, 1),
    default=None,
    help="feedback: share of negatives whose label comes back, standing for appealed "
    "flags [INFERLOOP_REPLAY__FALSE_POSITIVE_REPORT_SHARE, 0.02].",
)
@click.option(
    "--event-time",
    type=click.Choice(["original", "send"]),
    default=None,
    help="original: the data set's event times; send: each event's time is when it is "
    "sent, so a second data set follows a first [INFERLOOP_REPLAY__EVENT_TIME].",
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
    "--resume",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Go on from the resume file a failed or stopped replay wrote (its data set and "
    "plan; --rate may change).",
)
@click.option(
    "--create-topics/--no-create-topics",
    default=True,
    show_default=True,
    help="Create the domain's topics when missing.",
)
@click.option("--progress/--no-progress", default=True, show_default=True)
@data_dir_option
@json_option
@click.pass_context
def replay(
    ctx: click.Context,
    /,
    *,
    domain: Domain,
    dataset: str | None,
    rate_text: str | None,
    resume: Path | None,
    create_topics: bool,
    progress: bool,
    data_dir: Path | None,
    as_json: bool,
    **choices: Any,
) -> None:
    """Publish a data set's events in event-time order, and their labels after a delay.

    A broker outage shorter than INFERLOOP_REPLAY__DELIVERY_TIMEOUT_S is ridden out.
    Past it, or on SIGTERM/SIGINT, replay prints what was acknowledged, writes a resume
    file (under INFERLOOP_REPLAY__RESUME_DIR) and exits 3 (delivery failed) or 128 +
    the signal's number; `--resume FILE` goes on from there.
    """
    from dataclasses import replace

    from inferloop.domains.datasets import load_dataset
    from inferloop.domains.replay import ReplayPlan, read_resume, run_replay, selection
    from inferloop.topics import create_domain_topics

    settings = _settings_with_data_dir(ctx, data_dir)
    rate = parse_rate(rate_text) if rate_text is not None else None
    if resume is not None:
        _refuse_a_plan_beside(resume, dataset, choices)
        dataset, plan = read_resume(resume)
        plan = replace(plan, rate_per_s=rate) if rate_text is not None else plan
    elif dataset is None:
        raise click.UsageError("give --dataset (or --resume FILE)")
    else:
        plan = ReplayPlan.from_settings(settings.replay, rate_per_s=rate, **choices)
    _check_dataset(domain, dataset)
    if create_topics:
        create_domain_topics(settings, domain)
    data = load_dataset(dataset, settings.data_dir)
    with _stop_on_signals() as stop:
        bar = _progress_bar(len(selection(data, plan)), plan.labels_only, progress and not as_json)
        with bar as callback:
            summary = run_replay(settings, data, plan, resume=resume, stop=stop.event,
                                 progress=callback)  # fmt: skip
    _print_summary(summary, plan, domain, as_json)
    _exit_for(summary, stop.signal_number)


# The plan options' values when not given (the others are None then).
_PLAN_DEFAULTS = {"labels_only": False, "start_fraction": 0.0, "end_fraction": 1.0}


def _refuse_a_plan_beside(resume: Path, dataset: str | None, choices: dict[str, Any]) -> None:
    """A resume goes on with its file's plan: an option that would change it is an error
    rather than silently ignored."""
    given = [
        f"--{name.replace('_', '-')}"
        for name, value in choices.items()
        if value is not None and value != _PLAN_DEFAULTS.get(name)
    ]
    given += ["--dataset"] * (dataset is not None)
    if given:
        raise click.UsageError(
            f"--resume {resume} goes on with the plan it holds; drop {', '.join(given)}"
        )


class _Stop:
    """A stop request from a signal: the event replay watches, and the signal's number."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_number: int | None = None

    def handle(self, signum: int, _frame: object) -> None:
        # A second signal ends the process at once (the default action).
        signal.signal(signum, signal.SIG_DFL)
        self.signal_number = signum
        self.event.set()


@contextmanager
def _stop_on_signals() -> Iterator[_Stop]:
    """SIGTERM and SIGINT set a stop request instead of ending the process."""
    stop = _Stop()
    previous = {sig: signal.signal(sig, stop.handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_summary(summary: ReplaySummary, plan: ReplayPlan, domain: str, as_json: bool) -> None:
    if as_json:
        print_json(summary)
        return
    print_table(
        [
            {"what": "events", "topic": summary.events_topic, "sent": summary.events_sent,
             "acknowledged": summary.events_acknowledged},
            {"what": "labels", "topic": summary.labels_topic, "sent": summary.labels_sent,
             "acknowledged": summary.labels_acknowledged, "withheld": summary.labels_withheld,
             "waiting": summary.labels_waiting},
        ],
        ["what", "topic", "sent", "acknowledged", "withheld", "waiting"],
        title=f"replayed {summary.dataset}: {summary.outcome}",
    )  # fmt: skip
    click.echo(
        f"event times ({plan.event_time}) {summary.first_event_time} .. "
        f"{summary.last_event_time}; {summary.elapsed_s:.1f}s, "
        f"{summary.events_per_s:,.0f} events/s"
    )
    if summary.resume_file is not None:
        click.echo(
            f"{summary.events_acknowledged_total} events acknowledged in all; resume at "
            f"position {summary.next_position} with {summary.labels_waiting} labels waiting: "
            f"inferloop replay {domain} --resume {summary.resume_file}"
        )


# A replay whose sends failed past the delivery timeout (a resume file was written).
EXIT_DELIVERY_FAILED = 3


def _exit_for(summary: ReplaySummary, signal_number: int | None) -> None:
    if summary.outcome == "failed":
        click.echo(f"Error: {summary.error}", err=True)
        raise SystemExit(EXIT_DELIVERY_FAILED)
    if summary.outcome == "stopped":
        raise SystemExit(128 + (signal_number or signal.SIGTERM))


@contextmanager
def _progress_bar(
    total: int, labels_only: bool, shown: bool
) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar over events, with the label count and the rate (None when
    not ``shown``)."""
    if not shown:
        yield None
        return

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
