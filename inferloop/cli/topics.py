"""``inferloop topics``: the five topics of each domain."""

from __future__ import annotations

import click

from inferloop.cli import settings_of
from inferloop.cli.output import json_option, print_json, print_table
from inferloop.settings import DOMAINS, Domain
from inferloop.topics import create_domain_topics

domain_choice = click.Choice(DOMAINS)


@click.group()
def topics() -> None:
    """Create a domain's topics."""


@topics.command()
@click.argument("domains", nargs=-1, type=domain_choice)
@json_option
@click.pass_context
def create(ctx: click.Context, domains: tuple[Domain, ...], as_json: bool) -> None:
    """Create the events, predictions, labels, dead-letter and shadow topics of DOMAINS
    (all domains when none is named); topics that exist are left as they are."""
    settings = settings_of(ctx)
    results = {domain: create_domain_topics(settings, domain) for domain in domains or DOMAINS}
    if as_json:
        print_json(results)
        return
    rows = [
        {"domain": domain, "topic": topic, "state": state}
        for domain, result in results.items()
        for state, names in (("created", result.created), ("existed already", result.existing))
        for topic in names
    ]
    print_table(rows, ["domain", "topic", "state"])
    click.echo(f"partitions for new topics: {settings.topics.partitions}")


COMMANDS = (topics,)
