"""The ``inferloop`` command: the one place that knows every part.

Each sub-command group lives in its own module and imports the package it drives only
when it runs, so ``inferloop --help`` stays quick.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
from typing import Any

import click
from pydantic import ValidationError

from inferloop import __version__
from inferloop.errors import InferloopError
from inferloop.settings import Settings


class InferloopGroup(click.Group):
    """A group that turns the errors a user can act on into one line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InferloopError as exc:
            raise click.ClickException(str(exc)) from exc
        except ValidationError as exc:
            raise click.ClickException(_describe_settings_error(exc)) from exc


def _describe_settings_error(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        where = "__".join(str(p) for p in err["loc"]).upper()
        problems.append(f"INFERLOOP_{where}: {err['msg']}")
    return "invalid settings: " + "; ".join(problems)


def configure_logging(level: str) -> None:
    """Log lines to stderr with time, level and logger name."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # kafka-python logs every failed connection attempt as an error; inferloop reports
    # what failed itself, naming the address, so its lines only show when debugging.
    logging.getLogger("kafka").setLevel(logging.DEBUG if level == "DEBUG" else logging.CRITICAL)


def settings_of(ctx: click.Context) -> Settings:
    """The settings object built once for this process."""
    root = ctx.find_root()
    if not isinstance(root.obj, Settings):
        root.obj = Settings()
    return root.obj


@click.group(cls=InferloopGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="inferloop")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default=None,
    help="Override INFERLOOP_LOG_LEVEL.",
)
@click.pass_context
def cli(ctx: click.Context, log_level: str | None) -> None:
    """Classify live Kafka streams with the champion model of a Redis registry."""
    try:
        settings = Settings()
    except ValidationError as exc:
        raise click.ClickException(_describe_settings_error(exc)) from exc
    if log_level:
        settings = settings.model_copy(update={"log_level": log_level.upper()})
    ctx.obj = settings
    configure_logging(settings.log_level)


def _register() -> None:
    # Every module of this package contributes the commands in its COMMANDS list.
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for command in getattr(module, "COMMANDS", ()):
            cli.add_command(command)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="inferloop")
