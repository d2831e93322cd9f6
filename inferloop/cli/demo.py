"""``inferloop demo``: the whole lifecycle on the local real services."""

from __future__ import annotations

import click

from inferloop.cli import settings_of
from inferloop.cli.output import print_table
from inferloop.local.services import LocalServices
from inferloop.settings import DOMAINS
from inferloop.topics import create_domain_topics


@click.command()
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Start Kafka and Redis, create every domain's topics and show what runs."""
    settings = settings_of(ctx)
    states = LocalServices.from_settings(settings.services).up()
    print_table(
        [{"service": s.name, "version": s.version, "address": s.address} for s in states],
        ["service", "version", "address"],
        title="local services",
    )
    for domain in DOMAINS:
        result = create_domain_topics(settings, domain)
        click.echo(f"{domain}: created {list(result.created)}, existing {list(result.existing)}")


COMMANDS = (demo,)
