"""``inferloop retrain``: the retrain service, a run now, a rebuild, the status."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from inferloop.cli import settings_of
from inferloop.cli.output import json_option, print_json, print_table
from inferloop.keys import Keys
from inferloop.settings import DOMAINS, Domain, Settings

if TYPE_CHECKING:
    from inferloop.registry import Registry
    from inferloop.retrain.outcome import RunOutcome
    from inferloop.retrain.progress import Progress
    from inferloop.retrain.triggers import Trigger, TriggerQueue

# The retrain package (scikit-learn, matplotlib, APScheduler) is imported by the
# commands that use it, so that `inferloop --help` stays quick.

domain_choice = click.Choice(DOMAINS)
# Outcomes that mean the request did not do its job: exit status 1.
FAILED = frozenset({"failed", "lock_held", "lease_lost", "conflict", "cancelled"})


@click.group()
def retrain() -> None:
    """Retrain models on labelled data: the service, a run now, a rebuild, the status."""


def _registry(settings: Settings) -> Registry:
    from inferloop.registry import Registry

    return Registry.from_settings(settings)


def _progress() -> Progress:
    from inferloop.retrain.progress import LogProgress, RichProgress

    return RichProgress() if sys.stderr.isatty() else LogProgress()


@retrain.command()
@click.option(
    "--domain",
    "domains",
    multiple=True,
    type=domain_choice,
    help="Schedule only these domains (default: all). Triggers of any domain run.",
)
@click.option(
    "--max-runs",
    type=click.IntRange(min=1),
    default=None,
    help="Bounded mode: stop after this many runs.",
)
@click.option(
    "--timeout-s",
    type=click.FloatRange(min=0),
    default=None,
    help="Bounded mode: stop after this many seconds.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of /metrics and /healthz (0: any free port).",
)
@click.pass_context
def serve(
    ctx: click.Context,
    domains: tuple[Domain, ...],
    max_runs: int | None,
    timeout_s: float | None,
    metrics_port: int | None,
) -> None:
    """Run each domain's retrain on its schedule and execute operator triggers.

    SIGTERM or Ctrl-C stops it: a running fit gets INFERLOOP_RETRAIN__SHUTDOWN_GRACE_S
    to finish, then its lease is released; a second signal releases it at once."""
    from inferloop.retrain.service import RetrainService

    settings = settings_of(ctx)
    service = RetrainService(
        settings, _registry(settings), domains=domains or DOMAINS, metrics_port=metrics_port
    )

    def on_signal(signum: int, frame: Any) -> None:
        service.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    report = service.run(max_runs=max_runs, timeout_s=timeout_s)
    for outcome in report.runs:
        click.echo(outcome.summary_line())
    if report.abandoned:
        click.echo(
            f"stopped with runs in progress (leases released): {', '.join(report.abandoned)}",
            err=True,
        )
        logging.shutdown()
        # The fits still run in pool threads that Python would wait for; their leases
        # are released and their triggers stay pending for the next instance.
        os._exit(1)


def _parse_params(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for item in values:
        name, sep, text = item.partition("=")
        if not sep or "__" not in name:
            raise click.BadParameter(f"{item!r} is not STEP__NAME=VALUE", ctx, param)
        try:
            parsed[name] = json.loads(text)
        except json.JSONDecodeError:
            parsed[name] = text
    return parsed


@retrain.command()
@click.argument("domain", type=domain_choice)
@click.option(
    "--wait",
    is_flag=True,
    help="When a service runs the request: wait for the outcome and print it.",
)
@click.option("--force", is_flag=True, help="Run even when few new labels arrived.")
@click.option("--in-process", is_flag=True, help="Run here even when a service is running.")
@click.option("--seed", type=int, default=None, help="Seed of this run (default: the setting).")
@click.option(
    "--param",
    "params",
    multiple=True,
    callback=_parse_params,
    metavar="STEP__NAME=VALUE",
    help="Set a pipeline parameter for this run only (repeatable; VALUE is JSON or text), "
    "e.g. model__max_iter=200. Recorded in the version's recipe.",
)
@click.option(
    "--timeout-s",
    type=click.FloatRange(min=0),
    default=3600.0,
    show_default=True,
    help="How long --wait waits for the service.",
)
@json_option
@click.pass_context
def run(
    ctx: click.Context,
    *,
    domain: Domain,
    wait: bool,
    force: bool,
    in_process: bool,
    seed: int | None,
    params: dict[str, Any],
    timeout_s: float,
    as_json: bool,
) -> None:
    """Retrain DOMAIN now: through the retrain service when one runs, else here.

    Either way one retrain per domain runs at a time (a lease in Redis); a second
    request is told who holds it."""
    from inferloop.domains import get_domain
    from inferloop.domains.training import build
    from inferloop.retrain.job import RetrainJob, RunRequest
    from inferloop.retrain.status import redis_errors

    if params:
        build(get_domain(domain), 0, params)  # an unknown parameter fails here, not in a run
    settings = settings_of(ctx)
    registry = _registry(settings)
    with redis_errors(settings.redis):
        instances = [] if in_process else _live_services(settings, registry)
    if instances:
        with redis_errors(settings.redis):
            found = _through_service(
                settings,
                registry,
                instances,
                domain,
                force=force,
                seed=seed,
                params=params,
                wait=wait,
                timeout_s=timeout_s,
            )
        if found is None:
            return
        outcome = found
    else:
        job = RetrainJob(settings, registry, role="cli", progress=_progress())
        request = RunRequest(domain, trigger="cli", force=force, seed=seed, params=params)
        outcome = job.run(request)
    _show_outcome(outcome, as_json)


def _through_service(
    settings: Settings,
    registry: Registry,
    instances: list[str],
    domain: Domain,
    *,
    force: bool,
    seed: int | None,
    params: dict[str, Any],
    wait: bool,
    timeout_s: float,
) -> RunOutcome | None:
    trigger = _send_trigger(settings, registry, domain, force=force, seed=seed, params=params)
    where = ", ".join(instances)
    if not wait:
        click.echo(
            f"trigger {trigger.trigger_id} sent to the retrain service ({where}); "
            "`inferloop retrain status` shows its outcome"
        )
        return None
    click.echo(
        f"trigger {trigger.trigger_id} sent to the retrain service ({where}); "
        "waiting for its outcome",
        err=True,
    )
    return _queue(settings, registry).wait(trigger.trigger_id, timeout_s)


def _live_services(settings: Settings, registry: Registry) -> list[str]:
    from inferloop.retrain.service import heartbeat_max_age_s, live_services

    keys = Keys(settings.redis.key_prefix)
    return sorted(live_services(registry.client, keys, heartbeat_max_age_s(settings)))


def _queue(settings: Settings, registry: Registry) -> TriggerQueue:
    from inferloop.retrain.triggers import TriggerQueue

    return TriggerQueue(
        registry.client,
        Keys(settings.redis.key_prefix),
        outcome_ttl_s=settings.retrain.outcome_ttl_s,
    )


def _send_trigger(
    settings: Settings,
    registry: Registry,
    domain: Domain,
    *,
    force: bool,
    seed: int | None,
    params: dict[str, Any],
) -> Trigger:
    from inferloop.retrain.lock import default_holder
    from inferloop.retrain.status import iso, utc_now
    from inferloop.retrain.triggers import Trigger, new_trigger_id

    trigger = Trigger(
        trigger_id=new_trigger_id(),
        domain=domain,
        force=force,
        requested_by=default_holder("cli"),
        requested_at=iso(utc_now()),
        seed=seed,
        params=params,
    )
    _queue(settings, registry).send(trigger)
    return trigger


def _show_outcome(outcome: RunOutcome, as_json: bool) -> None:
    from inferloop.retrain.errors import LockHeldError, RetrainError

    if as_json:
        print_json(outcome)
    else:
        click.echo(outcome.summary_line())
        if outcome.report_dir:
            click.echo(f"report: {outcome.report_dir}")
    if outcome.outcome == "lock_held":
        raise LockHeldError(outcome.reason, holder=outcome.lock_holder)
    if outcome.outcome in FAILED:
        raise RetrainError(f"retrain {outcome.domain} {outcome.outcome}: {outcome.reason}")


@retrain.command()
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@json_option
@click.pass_context
def rebuild(ctx: click.Context, name: str, version: int, as_json: bool) -> None:
    """Refit NAME VERSION from the offsets in its lineage, reading Kafka (never the
    cache), and show that its metrics and holdout predictions match."""
    from inferloop.retrain.errors import RebuildMismatchError
    from inferloop.retrain.rebuild import rebuild as rebuild_version

    settings = settings_of(ctx)
    result = rebuild_version(settings, _registry(settings), name, version, _progress())
    if as_json:
        print_json({"matches": result.matches, "rebuild": result})
    else:
        rows = [
            {
                "metric": m.name,
                "recorded": m.recorded,
                "rebuilt": m.rebuilt,
                "match": "yes" if m.matches else "NO",
            }
            for m in result.metrics
        ]
        print_table(
            rows,
            ["metric", "recorded", "rebuilt", "match"],
            title=f"{name} v{version} rebuilt from {result.records} records "
            f"({result.examples} examples) in {result.duration_s:.1f}s",
        )
        same = result.digest_recorded == result.digest_rebuilt
        click.echo(
            f"holdout predictions sha256: recorded {result.digest_recorded}, rebuilt "
            f"{result.digest_rebuilt}: {'match' if same else 'DIFFER'}"
        )
        for what, values in result.provenance.items():
            click.echo(f"{what}: recorded {values['recorded']}, now {values['now']}")
    if not result.matches:
        differ = [m.name for m in result.metrics if not m.matches]
        digest = "equal" if result.digest_recorded == result.digest_rebuilt else "differs"
        raise RebuildMismatchError(
            f"{name} v{version} rebuilt differently: metrics differing "
            f"{', '.join(differ) or 'none'}; holdout predictions digest {digest}"
        )


@retrain.command()
@click.argument("domains", nargs=-1, type=domain_choice)
@json_option
@click.pass_context
def status(ctx: click.Context, domains: tuple[Domain, ...], as_json: bool) -> None:
    """Each domain's last run, its last run of each outcome (promoted, rejected,
    not_comparable, skipped, failed, ...), the next scheduled run, and what runs now."""
    from inferloop.retrain.service import heartbeat_max_age_s, live_services
    from inferloop.retrain.status import read_status, redis_errors

    settings = settings_of(ctx)
    registry = _registry(settings)
    keys = Keys(settings.redis.key_prefix)
    with redis_errors(settings.redis):
        statuses = [
            read_status(registry.client, keys, d, settings.retrain.lock_lease_s)
            for d in domains or DOMAINS
        ]
        services = live_services(registry.client, keys, heartbeat_max_age_s(settings))
    if as_json:
        print_json({"domains": statuses, "services": services})
        return
    rows = [
        {
            "domain": s.domain,
            "running": s.running.describe() if s.running else "",
            "last run": _run_cell(s.last_run),
            "finished": s.last_run.finished_at if s.last_run else "",
            "last promoted": _run_cell(s.last_by_outcome.get("promoted"), when=True),
            "next run": s.next_run_at,
        }
        for s in statuses
    ]
    print_table(rows, ["domain", "running", "last run", "finished", "last promoted", "next run"])
    kinds = [
        {
            "domain": s.domain,
            "outcome": outcome,
            "version": f"v{r.version}" if r.version else "",
            "finished": r.finished_at,
            "reason": r.reason if len(r.reason) <= 100 else r.reason[:99] + "…",
        }
        for s in statuses
        for outcome, r in s.last_by_outcome.items()
    ]
    if kinds:
        print_table(
            kinds,
            ["domain", "outcome", "version", "finished", "reason"],
            title="the last run of each outcome",
        )
    now = time.time()
    for name, info in sorted(services.items()):
        click.echo(
            f"service {name}: schedules {', '.join(info.get('domains', []))}, "
            f"heartbeat {now - float(info['heartbeat_at']):.0f}s ago"
        )
    if not services:
        click.echo("no retrain service is running: `inferloop retrain run` runs in process")


def _run_cell(run: RunOutcome | None, *, when: bool = False) -> str:
    """A run as one cell: its outcome (or, with ``when``, its time) and version."""
    if run is None:
        return ""
    first = run.finished_at if when else run.outcome
    return f"{first} v{run.version}" if run.version else first


COMMANDS = (retrain,)
