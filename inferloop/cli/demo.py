"""``inferloop demo``: the whole lifecycle of both domains on the local real services."""

from __future__ import annotations

from pathlib import Path

import click

from inferloop.cli import settings_of
from inferloop.settings import DOMAINS, Domain


@click.command()
@click.option(
    "--out",
    "out_root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-output"),
    show_default=True,
    help="Folder for the summary, plots, logs and reports (a sub-folder per run).",
)
@click.option("--domain", "domains", multiple=True, type=click.Choice(DOMAINS), help="Only these.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Where the data sets are (default: INFERLOOP_DATA_DIR, or ../shared/data).",
)
@click.option("--follow", is_flag=True, help="Keep running after the stream until Ctrl-C.")
@click.option(
    "--speed",
    type=click.FloatRange(min=0.1, max=100),
    default=1.0,
    show_default=True,
    help="Replay the streams this many times as fast.",
)
@click.option(
    "--timeout-s",
    type=click.FloatRange(min=60),
    default=900.0,
    show_default=True,
    help="Give up (and say what was missing) after this long.",
)
@click.pass_context
def demo(
    ctx: click.Context,
    *,
    out_root: Path,
    domains: tuple[Domain, ...],
    data_dir: Path | None,
    follow: bool,
    speed: float,
    timeout_s: float,
) -> None:
    """Run the whole lifecycle on the local Kafka and Redis, and show what happened.

    Publishes the older part of each data set as labelled history and trains v1 through
    the real retrain job; shows a weakened candidate rejected by the gate and registers a
    worse version without promoting it; starts a worker, a retrain service and a monitor
    per domain; replays the rest as a live stream with labels coming back after a delay;
    mid-stream promotes the worse version by hand (the schedule paused), which the
    monitor rolls back on its own; lets the schedule promote a better v2 (the gate
    decides); then stops what it started and writes a summary and plots.
    """
    from dataclasses import replace

    from rich.console import Console

    from inferloop.demo.plan import default_plan, with_rates
    from inferloop.demo.run import Demo
    from inferloop.demo.summary import print_report

    settings = settings_of(ctx)
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    plan = default_plan(out_root, domains or None)
    plan = replace(
        with_rates(plan, speed), out_dir=out_root / plan.run_id, follow=follow, timeout_s=timeout_s
    )
    console = Console()
    if not console.is_terminal:
        # A log or a pipe: wide enough for the live table's eleven columns.
        console = Console(width=max(console.width, 132))
    console.print(f"demo run {plan.run_id}: topics {plan.topic_prefix}*, keys {plan.key_prefix}:*")
    report = Demo(settings, plan, console).run()
    print_report(console, report)


COMMANDS = (demo,)
