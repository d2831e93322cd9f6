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

log = logging.getLogger(__name__)

# Exit statuses: 0 done; EXIT_ERROR an expected error (an ``InferloopError``: one line
# that says what and where, the traceback only at DEBUG); 2 a usage error (click's).
# Anything else is a bug and keeps its traceback.
EXIT_ERROR = 1


class InferloopGroup(click.Group):
    """A group that turns the errors a user can act on into one line and EXIT_ERROR."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InferloopError as exc:
            # The one place an expected error is shown: its message, and its traceback
            # only for someone debugging (--verbose).
            log.debug("%s: %s", type(exc).__name__, exc, exc_info=True)
            raise _Failure(str(exc)) from exc
        except ValidationError as exc:
            raise _Failure(_describe_settings_error(exc)) from exc


class _Failure(click.ClickException):
    exit_code = EXIT_ERROR


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
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG, with the traceback of an error.")
@click.pass_context
def cli(ctx: click.Context, log_level: str | None, verbose: bool) -> None:
    """Classify live Kafka streams with the champion model of a Redis registry.

    Exit status: 0 done, 1 an error the message explains (with --verbose, its
    traceback too), 2 a usage error."""
    try:
        settings = Settings()
    except ValidationError as exc:
        raise _Failure(_describe_settings_error(exc)) from exc
    if verbose:
        log_level = "DEBUG"
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
