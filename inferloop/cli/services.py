"""``inferloop services``: run the real Kafka and Redis on this machine, without Docker."""

from __future__ import annotations

import click

from inferloop.cli import settings_of
from inferloop.cli.output import json_option, print_json, print_table
from inferloop.local.services import LocalServices, ServiceState


@click.group()
def services() -> None:
    """Start, stop and inspect the local Kafka broker and Redis server."""


def _local(ctx: click.Context) -> LocalServices:
    return LocalServices.from_settings(settings_of(ctx).services)


def _show(states: list[ServiceState], as_json: bool) -> None:
    if as_json:
        print_json(states)
        return
    rows = [
        {
            "service": s.name,
            "state": ("started" if s.started_now else "running") if s.running else "stopped",
            "address": s.address,
            "version": s.version,
            "pid": s.pid,
            "start": f"{s.start_s:.1f} s" if s.start_s is not None else None,
            "data": s.home,
        }
        for s in states
    ]
    print_table(rows, ["service", "state", "address", "version", "pid", "start", "data"])


@services.command()
@click.pass_context
def install(ctx: click.Context) -> None:
    """Fetch Kafka's jars into the cache and install redis-server if missing (as root)."""
    found = _local(ctx).install()
    click.echo(f"Kafka jars: {found['kafka']}\nredis-server: {found['redis']}")


@services.command()
@json_option
@click.pass_context
def up(ctx: click.Context, as_json: bool) -> None:
    """Start Kafka and Redis unless they run already (fetches Kafka's jars once)."""
    states = _local(ctx).up()
    _show(states, as_json)
    if not as_json and not any(s.started_now for s in states):
        click.echo("Both were running already: nothing to do.")


@services.command()
@click.pass_context
def down(ctx: click.Context) -> None:
    """Stop the Kafka and Redis that `services up` started; their data stays."""
    stopped = _local(ctx).down()
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else "Nothing was running.")


@services.command()
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Say what runs where."""
    _show(_local(ctx).status(), as_json)


@services.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def reset(ctx: click.Context, yes: bool) -> None:
    """Stop both services and delete all their data (topics, registry, everything)."""
    local = _local(ctx)
    click.echo(f"This deletes {local.kafka.data_dir} and {local.redis.data_dir}.")
    if not yes:
        click.confirm("Continue?", abort=True)
    local.reset()
    click.echo("Kafka and Redis data wiped; `inferloop services up` starts them empty.")


COMMANDS = (services,)
