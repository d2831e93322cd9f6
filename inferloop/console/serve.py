"""Serving the console with uvicorn: loopback by default, TLS required on any other address."""

from __future__ import annotations

import ipaddress
import logging

import uvicorn

from inferloop.console.app import create_app
from inferloop.console.errors import ConsoleConfigError
from inferloop.registry import Registry
from inferloop.settings import ConsoleSettings, Settings

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check(section: ConsoleSettings) -> None:
    """Refuse what the console must not start with: a public bind without TLS, no tokens."""
    tls = section.tls_certfile is not None and section.tls_keyfile is not None
    if not is_loopback(section.host) and not tls:
        raise ConsoleConfigError(
            f"the console binds to {section.host}, not a loopback address: set "
            "INFERLOOP_CONSOLE__TLS_CERTFILE and INFERLOOP_CONSOLE__TLS_KEYFILE (or bind 127.0.0.1)"
        )
    if not section.viewer_token_hashes and not section.operator_token_hashes:
        raise ConsoleConfigError(
            "no console token: make one with `inferloop console hash-token NAME` and set "
            "INFERLOOP_CONSOLE__OPERATOR_TOKEN_HASHES (or VIEWER_TOKEN_HASHES)"
        )


def address(section: ConsoleSettings) -> str:
    """The URL the console answers on."""
    scheme = "https" if section.tls_certfile is not None else "http"
    return f"{scheme}://{section.host}:{section.port}/"


def serve(settings: Settings) -> None:
    """Run the console until interrupted."""
    section = settings.console
    check(section)
    with Registry.from_settings(settings) as registry:
        app = create_app(settings, registry)
        log.info("console: serving %s", address(section))
        uvicorn.run(
            app, host=section.host, port=section.port, log_level="warning",
            ssl_certfile=section.tls_certfile, ssl_keyfile=section.tls_keyfile,
            proxy_headers=False, server_header=False,
        )  # fmt: skip
