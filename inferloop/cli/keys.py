"""``inferloop keys``: the Ed25519 key pair that signs model versions."""

from __future__ import annotations

from pathlib import Path

import click

from inferloop.cli.output import json_option, print_json


@click.group()
def keys() -> None:
    """Signing keys of the model registry."""


@keys.command()
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write NAME.key (private, mode 0600) and NAME.pub into.",
)
@click.option("--name", default="inferloop-signing", show_default=True, help="File name stem.")
@click.option("--force", is_flag=True, help="Overwrite an existing key pair.")
@json_option
def generate(out_dir: Path, name: str, force: bool, as_json: bool) -> None:
    """Write a new Ed25519 key pair. The private key goes only to the signer (the retrain
    job, or the operator who imports); workers get the public key."""
    from inferloop.registry.signing import generate_key_pair

    pair = generate_key_pair(out_dir, name, overwrite=force)
    if as_json:
        print_json(pair)
        return
    click.echo(f"key id {pair.key_id}")
    click.echo(f"private key (signer only): {pair.private_path}")
    click.echo(f"public key (every loader): {pair.public_path}")
    click.echo(
        f"retrain job, operator import: INFERLOOP_REGISTRY__SIGNING_KEY_PATH={pair.private_path}"
    )
    click.echo(
        f"workers (comma-separated list): INFERLOOP_REGISTRY__VERIFY_KEY_PATHS={pair.public_path}"
    )


COMMANDS = (keys,)
