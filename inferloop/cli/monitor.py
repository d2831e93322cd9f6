"""``inferloop monitor``: the live-quality monitor (serve) and what it last saw (status)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from inferloop.cli import settings_of
from inferloop.cli.output import json_option, print_json, print_table
from inferloop.settings import DOMAINS, Domain, Settings

if TYPE_CHECKING:
    from inferloop.monitor.service import Monitor

log = logging.getLogger(__name__)


@click.group()
def monitor() -> None:
    """Live quality of every watched version, from the labels that come back."""


@monitor.command()
@click.option(
    "--domain",
    "domains",
    multiple=True,
    type=click.Choice(DOMAINS),
    help="Monitor only these domains (default: all; one thread each).",
)
@click.option(
    "--max-batches", type=click.IntRange(min=1), default=None, help="Bounded mode: stop after "
    "this many batches."
)  # fmt: skip
@click.option(
    "--idle-timeout-s", type=click.FloatRange(min=0, min_open=True), default=None,
    help="Bounded mode: stop after this long without a record.",
)  # fmt: skip
@click.option(
    "--metrics-port", type=click.IntRange(0, 65535), default=None,
    help="Port of /metrics and /healthz (the next domain: one more; 0: any free port).",
)  # fmt: skip
@click.pass_context
def serve(
    ctx: click.Context,
    domains: tuple[Domain, ...],
    max_batches: int | None,
    idle_timeout_s: float | None,
    metrics_port: int | None,
) -> None:
    """Read labels and predictions, re-score with every watched version, report."""
    from inferloop.monitor.service import Monitor

    settings = settings_of(ctx)
    base = settings.monitor.metrics_port if metrics_port is None else metrics_port
    monitors = [
        Monitor(_with_port(settings, base + i if base else 0), domain)
        for i, domain in enumerate(domains or DOMAINS)
    ]
    _install_signals(monitors)
    if len(monitors) == 1:
        monitors[0].run(max_batches=max_batches, until_idle_s=idle_timeout_s)
        return
    runs = [_Run(m, max_batches, idle_timeout_s) for m in monitors]
    for run in runs:
        run.thread.start()
    while any(run.thread.is_alive() for run in runs):
        if any(run.error is not None for run in runs):
            for m in monitors:
                m.request_stop("another domain's monitor failed")
        time.sleep(0.2)
    for run in runs:
        if run.error is not None:
            raise run.error


def _with_port(settings: Settings, port: int) -> Settings:
    return settings.model_copy(
        update={"monitor": settings.monitor.model_copy(update={"metrics_port": port})}
    )


class _Run:
    """One domain's monitor in a thread; what it raised is kept for the main thread."""

    def __init__(self, monitor: Monitor, max_batches: int | None, idle_s: float | None):
        self.monitor = monitor
        self.error: Exception | None = None
        self._limits = (max_batches, idle_s)
        self.thread = threading.Thread(target=self._run, name=f"monitor-{monitor.domain}")

    def _run(self) -> None:
        max_batches, idle_s = self._limits
        try:
            self.monitor.run(max_batches=max_batches, until_idle_s=idle_s)
        except Exception as exc:  # raised again by the main thread
            log.exception("the monitor of %s failed", self.monitor.domain)
            self.error = exc


def _install_signals(monitors: list[Monitor]) -> None:
    """First SIGTERM/SIGINT: each monitor stores its batch and stops; the next ends now."""

    def handle(signum: int, frame: FrameType | None) -> None:
        for m in monitors:
            m.request_stop(signal.Signals(signum).name)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handle)


@monitor.command()
@click.argument("domain", type=click.Choice(DOMAINS))
@json_option
@click.pass_context
def status(ctx: click.Context, domain: Domain, as_json: bool) -> None:
    """What the domain's monitor last evaluated: per role, version, figures with their
    intervals, labelled share per predicted class; the windows, label delay, alarms."""
    from inferloop.connections import check_redis
    from inferloop.keys import Keys
    from inferloop.monitor.errors import NoStatusError
    from inferloop.monitor.state import read_status

    settings = settings_of(ctx)
    client = check_redis(settings.redis)
    try:
        snapshot = read_status(client, Keys(settings.redis.key_prefix), domain)
    finally:
        client.close()
    if snapshot is None:
        raise NoStatusError(f"no monitor status for {domain} yet (is `monitor serve` running?)")
    if as_json:
        print_json(snapshot)
        return
    _print_status(snapshot)


def _print_status(snapshot: dict[str, Any]) -> None:
    window, delay, checks = snapshot["window"], snapshot["label_delay_s"], snapshot["checks"]
    click.echo(f"{snapshot['domain']}: evaluated at {snapshot['evaluated_at']}")
    click.echo(
        f"window by positives: {window['positives_events']} events, "
        f"{window['positives_positives']} positives (target {window['positives_target']}); "
        f"by time ({window['time_s']:g} s): {window['time_events']} events, "
        f"{window['time_positives']} positives"
    )
    click.echo(
        f"label delay: p50 {_num(delay['p50'])} s, p90 {_num(delay['p90'])} s; labels "
        f"{checks['labels']}, duplicates {checks['duplicates']}, rejects {checks['rejects']}; "
        f"served checks {checks['served_checked']}, mismatches {checks['served_mismatches']}"
    )
    rows = [
        _figure_row(role, info, window_name, figures.get("target", figure), value)
        if figure == "target_value"
        else _figure_row(role, info, window_name, figure, value)
        for role, info in snapshot["roles"].items()
        for window_name, figures in info["windows"].items()
        for figure, value in figures.items()
        if isinstance(value, dict) and "value" in value
    ]
    print_table(rows, ["role", "version", "window", "figure", "value", "interval"], "figures")
    shares = [
        {"role": role, "version": info["version"], "class": label, **counts}
        for role, info in snapshot["roles"].items()
        for label, counts in info["labelled_share"].items()
    ]
    print_table(
        shares, ["role", "version", "class", "labelled", "predicted", "share"],
        "labelled share per predicted class",
    )  # fmt: skip
    probation = snapshot.get("probation")
    if probation:
        click.echo(f"probation: {probation}")
    alarms = snapshot.get("alarms") or []
    click.echo("alarms: " + ("; ".join(str(a) for a in alarms) if alarms else "none"))


def _figure_row(
    role: str, info: dict[str, Any], window: str, figure: str, value: dict[str, Any]
) -> dict[str, Any]:
    return {
        "role": role,
        "version": info["version"],
        "window": window,
        "figure": figure,
        "value": _num(value.get("value")),
        "interval": f"{_num(value.get('low'))} - {_num(value.get('high'))}",
    }


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.3f}"


COMMANDS = (monitor,)
