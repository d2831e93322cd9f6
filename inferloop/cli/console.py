"""``inferloop console``: the operator console (serve) and its tokens (hash-token)."""

from __future__ import annotations

import click

from inferloop.cli import settings_of


@click.group()
def console() -> None:
    """The operator console: a web page over the registry, the monitor, retrain and Kafka."""


@console.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Serve the console (127.0.0.1:8700 by default; TLS required on any other address)."""
    from inferloop.console.serve import address, check
    from inferloop.console.serve import serve as run

    settings = settings_of(ctx)
    check(settings.console)
    click.echo(f"inferloop console on {address(settings.console)}", err=True)
    run(settings)


@console.command("hash-token")
@click.argument("name")
@click.option("--token", default=None, help="Hash this token (default: a new random one, printed).")
def hash_token(name: str, token: str | None) -> None:
    """Print a stored hash for NAME's token (and the token itself when it is new).

    Put the hash in INFERLOOP_CONSOLE__OPERATOR_TOKEN_HASHES or ..._VIEWER_TOKEN_HASHES
    (comma separated); give the token to NAME, who logs in with it.
    """
    from inferloop.console.auth import hash_token as make
    from inferloop.console.auth import new_token

    if token is None:
        token = new_token()
        click.echo(f"token: {token}", err=True)
    click.echo(make(name, token))


COMMANDS = [console]
