"""``inferloop worker run``, ``inferloop dlq show|redrive`` and ``inferloop lag``."""

from __future__ import annotations

import logging
import socket
import sys
from typing import TYPE_CHECKING

import click

from inferloop.cli import settings_of
from inferloop.cli.output import json_option, print_json, print_table
from inferloop.settings import DOMAINS, Domain, Settings

if TYPE_CHECKING:
    from inferloop.ops.dlq import StoredLetter

# Each command imports the worker package when it runs: the CLI is imported as a whole
# (``inferloop --help``, and every other command), and the worker brings scikit-learn.

log = logging.getLogger(__name__)

# How many ports from the default a lone worker tries before the clear error.
AUTO_METRICS_PORTS = 64

domain_argument = click.argument("domain", type=click.Choice(DOMAINS))


@click.group()
def worker() -> None:
    """The streaming inference worker."""


@worker.command()
@domain_argument
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes under a supervisor (child i serves metrics on base + i).",
)
@click.option(
    "--delivery",
    type=click.Choice(["at-least-once", "exactly-once"]),
    default=None,
    help="Override INFERLOOP_WORKER__DELIVERY.",
)
@click.option(
    "--max-messages",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after this many messages (bounded run).",
)
@click.option(
    "--idle-timeout-s",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop after this long without a message (bounded run).",
)
@click.option("--slot", type=click.IntRange(min=0), default=0, hidden=True)
@click.option("--supervised", is_flag=True, hidden=True)
@click.pass_context
def run(
    ctx: click.Context,
    *,
    domain: Domain,
    processes: int,
    delivery: str | None,
    max_messages: int | None,
    idle_timeout_s: float | None,
    slot: int,
    supervised: bool,
) -> None:
    """Consume DOMAIN's topic in the group inferloop-DOMAIN, score each batch with the
    champion, produce predictions and dead letters, commit; until SIGTERM (the first one
    finishes and commits the batch in hand, a second one exits at once)."""
    settings = settings_of(ctx)
    if delivery is not None:
        settings = settings.model_copy(
            update={"worker": settings.worker.model_copy(update={"delivery": delivery})}
        )
    if processes > 1:
        _supervise(settings, domain, processes=processes, delivery=delivery,
                   max_messages=max_messages, idle_timeout_s=idle_timeout_s)  # fmt: skip
        return
    from inferloop.worker.loop import RunLimits, Worker

    limits = RunLimits(max_messages=max_messages, idle_timeout_s=idle_timeout_s)
    summary = Worker(
        settings,
        domain,
        slot=slot,
        limits=limits,
        install_signals=True,
        supervised=supervised,
        metrics_port=None if supervised else free_metrics_port(settings),
    ).run()
    click.echo(
        f"consumed {summary.consumed}, predicted {summary.predicted}, dead-lettered "
        f"{summary.dead_lettered} in {summary.batches} batches with versions "
        f"{sorted(summary.versions)} ({summary.stopped_because})",
        err=True,
    )


def free_metrics_port(settings: Settings) -> int | None:
    """The metrics port of a lone ``worker run``: when INFERLOOP_WORKER__METRICS_PORT is
    not set, the first free one from the default up (9300, 9301, ...), as --processes
    gives child i base + i, so a second worker on a host starts; None (the setting, and
    its clear error when the port is taken) when the port was set."""
    ws = settings.worker
    if "metrics_port" in ws.model_fields_set or not ws.metrics_port:
        return None
    for port in range(ws.metrics_port, min(ws.metrics_port + AUTO_METRICS_PORTS, 65536)):
        if _port_free(ws.metrics_host, port):
            if port != ws.metrics_port:
                log.info(
                    "metrics port %d is taken (another worker?): this one serves on %d "
                    "(INFERLOOP_WORKER__METRICS_PORT fixes it)",
                    ws.metrics_port,
                    port,
                )
            return port
    return None


def _port_free(host: str, port: int) -> bool:
    # The same options as the HTTP server's own bind: only a listener makes it fail.
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _supervise(
    settings: Settings,
    domain: Domain,
    *,
    processes: int,
    delivery: str | None,
    max_messages: int | None,
    idle_timeout_s: float | None,
) -> None:
    args = ["--log-level", settings.log_level, "worker", "run", domain, "--supervised"]
    if delivery is not None:
        args += ["--delivery", delivery]
    if max_messages is not None:
        args += ["--max-messages", str(max_messages)]
    if idle_timeout_s is not None:
        args += ["--idle-timeout-s", str(idle_timeout_s)]
    from inferloop.worker.supervisor import Supervisor

    code = Supervisor(processes, args, grace_s=settings.worker.shutdown_grace_s).run()
    if code:
        sys.exit(code)


@click.group()
def dlq() -> None:
    """Dead letters: list them by reason, redrive chosen ones after a fix."""


@dlq.command()
@domain_argument
@click.option("--reason", "reasons", multiple=True, help="Only letters with this reason.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Letters to list (the counts cover all).",
)
@json_option
@click.pass_context
def show(
    ctx: click.Context, *, domain: Domain, reasons: tuple[str, ...], limit: int, as_json: bool
) -> None:
    """Count DOMAIN's dead letters by reason and list the first ones."""
    from inferloop.ops.dlq import show as show_letters

    summary = show_letters(settings_of(ctx), domain, reasons=reasons, limit=limit)
    if as_json:
        print_json({
            "topic": summary.topic,
            "total": summary.total,
            "by_reason": summary.by_reason,
            "letters": [_letter_row(letter) for letter in summary.letters],
        })  # fmt: skip
        return
    counts = [{"reason": r, "count": n} for r, n in summary.by_reason.items()]
    click.echo(f"{summary.topic}: {summary.total} dead letters")
    print_table(counts, ["reason", "count"])
    if summary.letters:
        print_table([_letter_row(letter) for letter in summary.letters],
                    ["letter", "reason", "source", "key", "bytes", "detail"])  # fmt: skip


def _letter_row(letter: StoredLetter) -> dict[str, object]:
    return {
        "letter": letter.coordinates,
        "reason": letter.reason,
        "source": f"{letter.source_topic}/{letter.source_partition}@{letter.source_offset}",
        "key": letter.key.decode("utf-8", errors="replace")[:40] if letter.key else None,
        "bytes": len(letter.value or b""),
        "detail": letter.detail[:80],
        "time": letter.time,
    }


@dlq.command()
@domain_argument
@click.option("--reason", "reasons", multiple=True, help="Redrive letters with this reason.")
@click.option(
    "--letter",
    "coordinates",
    multiple=True,
    metavar="PARTITION:OFFSET",
    help="Redrive this letter of the dead-letter topic (repeatable).",
)
@click.option("--dry-run", is_flag=True, help="Count what would be redriven; send nothing.")
@json_option
@click.pass_context
def redrive(
    ctx: click.Context,
    *,
    domain: Domain,
    reasons: tuple[str, ...],
    coordinates: tuple[str, ...],
    dry_run: bool,
    as_json: bool,
) -> None:
    """Republish chosen dead letters, bytes unchanged, to their source topic."""
    from inferloop.ops.dlq import redrive as redrive_letters

    result = redrive_letters(settings_of(ctx), domain, reasons=reasons, coordinates=coordinates,
                             dry_run=dry_run)  # fmt: skip
    if as_json:
        print_json(result)
        return
    verb = "would redrive" if dry_run else "redrove"
    where = ", ".join(f"{n} to {t}" for t, n in result.by_topic.items()) or "nothing"
    click.echo(f"{verb} {result.sent} letters ({where}); skipped {result.skipped} "
               "(too large or empty)")  # fmt: skip


@click.command()
@domain_argument
@json_option
@click.pass_context
def lag(ctx: click.Context, domain: Domain, as_json: bool) -> None:
    """Lag of DOMAIN's consumer group, from the offsets committed in Kafka (works with
    every worker down)."""
    from inferloop.ops.lag import group_lag

    result = group_lag(settings_of(ctx), domain)
    if as_json:
        print_json({"group": result.group, "topic": result.topic, "total": result.total,
                    "partitions": result.partitions})  # fmt: skip
        return
    rows = [{"partition": p.partition, "committed": p.committed, "end": p.end, "lag": p.lag}
            for p in result.partitions]  # fmt: skip
    click.echo(f"group {result.group} on {result.topic}: lag {result.total}")
    print_table(rows, ["partition", "committed", "end", "lag"])


COMMANDS = (worker, dlq, lag)
