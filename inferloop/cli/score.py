"""``inferloop score``: batch inference over a file of events or a range of a topic.

The version is verified as a worker verifies it and scores with the worker's compiled
path, validation and prediction format; see :mod:`inferloop.batch`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from inferloop.cli import settings_of
from inferloop.cli.output import json_option, print_json, print_table
from inferloop.cli.registry import REF, Ref
from inferloop.settings import DOMAINS, Domain, Settings

if TYPE_CHECKING:
    from inferloop.batch import Summary
    from inferloop.batch.files import Chunk
    from inferloop.batch.sinks import Sink
    from inferloop.registry.serving import ActiveModel

# Evaluate's batches are 1,000 too. In one process on 20,000 SMS events (2026-12-07, load
# average 12 on 2 cores) the emails model ran 5,100-5,500 events/s in chunks of 2,000
# against 7,200-8,000 in chunks of 1,000 (and 500); transactions were as fast or faster
# in chunks of 2,000 (--chunk-size).
DEFAULT_CHUNK = 1_000
STDIO = "-"


@click.command()
@click.argument("domain", type=click.Choice(DOMAINS))
@click.option(
    "--model", "ref", type=REF, default=None,
    help="NAME@ALIAS or NAME:VERSION to score with (default: DOMAIN@champion).",
)  # fmt: skip
@click.option(
    "--input", "input_path", default=None, metavar="FILE",
    help="JSON Lines of events ('-' for standard input; read as gzip when it ends in .gz).",
)  # fmt: skip
@click.option(
    "--topic-range", is_flag=True,
    help="Read the domain's events topic from --from to --to instead of a file.",
)  # fmt: skip
@click.option(
    "--from", "start", default="earliest", show_default=True,
    help="Topic range start: earliest, a time (ISO 8601 with zone, or epoch ms), or "
    "PARTITION=OFFSET[,...].",
)  # fmt: skip
@click.option(
    "--to", "stop", default="end", show_default=True,
    help="Topic range end (exclusive): end (the end offsets at start), a time, or "
    "PARTITION=OFFSET[,...].",
)  # fmt: skip
@click.option(
    "--output", "output_path", default=None, metavar="FILE",
    help="Predictions as JSON Lines ('-' for standard output; gzip when it ends in .gz).",
)  # fmt: skip
@click.option("--to-topic", default=None, metavar="TOPIC", help="Produce predictions to TOPIC.")
@click.option(
    "--to-predictions", is_flag=True,
    help="Produce to the domain's predictions topic, which downstream consumers read.",
)  # fmt: skip
@click.option(
    "--rejects", "rejects_path", default=None, metavar="FILE",
    help="Invalid input as JSON Lines, with the worker's dead-letter reasons.",
)  # fmt: skip
@click.option(
    "--chunk-size", type=click.IntRange(1, 100_000), default=DEFAULT_CHUNK, show_default=True,
    help="Events validated and scored per call (memory is bounded by it).",
)  # fmt: skip
@click.option(
    "--progress/--no-progress", default=None,
    help="A progress bar on standard error (default: when it is a terminal).",
)  # fmt: skip
@json_option
@click.pass_context
def score(
    ctx: click.Context,
    /,
    *,
    domain: Domain,
    ref: Ref | None,
    input_path: str | None,
    topic_range: bool,
    start: str,
    stop: str,
    output_path: str | None,
    to_topic: str | None,
    to_predictions: bool,
    rejects_path: str | None,
    chunk_size: int,
    progress: bool | None,
    as_json: bool,
) -> None:
    """Score events of DOMAIN in batch with one verified model version.

    Reads --input FILE or --topic-range; writes to --output FILE, --to-topic TOPIC or
    (only when asked) --to-predictions. Prints counts by label and by reject reason and
    the rate; --json for scripts."""
    from inferloop.topics import for_settings

    settings = settings_of(ctx)
    if (input_path is None) == (not topic_range):
        raise click.UsageError("give exactly one of --input FILE and --topic-range")
    outputs = [o for o in (output_path, to_topic, to_predictions or None) if o is not None]
    if len(outputs) != 1:
        raise click.UsageError("give exactly one of --output, --to-topic and --to-predictions")
    predictions_topic = for_settings(settings, domain).predictions
    if to_topic == predictions_topic:
        raise click.UsageError(
            f"{to_topic} is the predictions topic downstream consumers read: "
            "say --to-predictions to write there"
        )
    if to_predictions:
        to_topic = predictions_topic
    shown = sys.stderr.isatty() if progress is None else progress
    with ExitStack() as stack:
        # The input first (a wrong path fails before seconds of model loading), then
        # the model, and only then the output: a refused version writes nothing.
        source = _source(
            stack, settings, domain, input_path, start=start, stop=stop, chunk_size=chunk_size
        )
        model = _model(stack, settings, domain, ref)
        sink = _sink(stack, settings, output_path, to_topic)
        summary = _run(stack, model, source, sink, rejects=rejects_path, shown=shown)
    _report(summary, as_json, err=output_path == STDIO)


def _model(stack: ExitStack, settings: Settings, domain: Domain, ref: Ref | None) -> ActiveModel:
    from inferloop.batch import load_model
    from inferloop.domains import get_domain
    from inferloop.registry import Registry

    registry = stack.enter_context(Registry.from_settings(settings))
    ref = ref or Ref(domain, alias="champion")
    return load_model(registry, get_domain(domain), ref.name, ref.resolve(registry))


def _source(
    stack: ExitStack,
    settings: Settings,
    domain: Domain,
    input_path: str | None,
    *,
    start: str,
    stop: str,
    chunk_size: int,
) -> Any:
    from inferloop.batch.files import LinesReader
    from inferloop.batch.topic_range import TopicRange, parse_bound
    from inferloop.topics import for_settings

    if input_path is not None:
        return stack.enter_context(LinesReader(input_path, chunk_size))
    topic = for_settings(settings, domain).events
    bounds = parse_bound(start), parse_bound(stop)
    return stack.enter_context(TopicRange(settings.kafka, topic, *bounds, chunk_size=chunk_size))


def _sink(stack: ExitStack, settings: Settings, output_path: str | None, topic: str | None) -> Sink:
    from inferloop.batch.files import LinesWriter
    from inferloop.batch.sinks import TopicSink

    sink: Sink
    if output_path is not None:
        sink = LinesWriter(output_path)
    else:
        assert topic is not None
        limit = settings.worker.max_request_size
        sink = TopicSink(settings.kafka, topic, max_request_size=limit)
    stack.callback(sink.close)
    return sink


def _run(
    stack: ExitStack, model: ActiveModel, source: Any, sink: Sink, *, rejects: str | None,
    shown: bool,
) -> Summary:  # fmt: skip
    from inferloop.batch import BatchRun
    from inferloop.batch.sinks import RejectsWriter

    writer = RejectsWriter(rejects)
    stack.callback(writer.close)
    in_bytes = not hasattr(source, "topic")
    with _progress_bar(source.total, in_bytes=in_bytes, shown=shown) as update:
        run = BatchRun(model, sink, writer, on_chunk=update)
        return run.run(source)


@contextmanager
def _progress_bar(
    total: int | None, *, in_bytes: bool, shown: bool
) -> Iterator[Callable[[Chunk, Summary], None]]:
    """A rich progress bar on standard error over bytes read (files) or records (topic
    ranges), with the events scored and their rate."""
    if not shown:
        yield lambda chunk, summary: None
        return
    bar = Progress(
        TextColumn("[bold]scoring"),
        BarColumn(),
        DownloadColumn() if in_bytes else MofNCompleteColumn(),
        TextColumn("{task.fields[events]:>12,} events {task.fields[rate]:>9,.0f}/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    task = bar.add_task("scoring", total=total, events=0, rate=0.0)

    def update(chunk: Chunk, summary: Summary) -> None:
        bar.update(task, completed=chunk.done, events=summary.read, rate=summary.events_per_s)

    with bar:
        yield update


def _report(summary: Summary, as_json: bool, *, err: bool) -> None:
    if as_json:
        if err:
            click.echo(_json_text(summary.as_dict()), err=True)
        else:
            print_json(summary.as_dict())
        return
    echo: Callable[[str], None] = (lambda text: click.echo(text, err=True)) if err else click.echo
    echo(
        f"scored {summary.read:,} events with {summary.model} ({summary.scorer}) in "
        f"{summary.elapsed_s:.1f} s, {summary.events_per_s:,.0f} events/s: "
        f"{summary.predicted:,} predicted, {summary.rejected:,} rejected"
    )
    if err:
        return
    rows = [{"label": k, "events": f"{v:,}"} for k, v in summary.labels.items()]
    print_table(rows, ["label", "events"], title="predictions by label")
    if summary.reject_reasons:
        rows = [
            {"reason": k, "events": f"{v:,}"} for k, v in sorted(summary.reject_reasons.items())
        ]
        print_table(rows, ["reason", "events"], title="rejects by reason")


def _json_text(value: Any) -> str:
    import json

    return json.dumps(value, indent=2)


COMMANDS = (score,)
