"""The console's routes: pages that read, forms that act (POST, CSRF token, Origin).

``create_app`` builds the ASGI app from one ``Settings`` and one ``Registry``. Pages are
plain functions Starlette runs in its thread pool (they block on Redis and Kafka); the
forms read their fields, check the session's CSRF token and the role, then act.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from inferloop.console import actions, liveplot, timeline, views
from inferloop.console.auth import LoginLimiter, TokenBook, csrf_token, same_token
from inferloop.console.guards import Guards
from inferloop.errors import InferloopError
from inferloop.registry import Registry
from inferloop.settings import DOMAINS, Domain, Settings

log = logging.getLogger(__name__)

_HERE = Path(__file__).parent
_IMAGE_TYPES = {".png": "image/png", ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class Console:
    """What every route reads: the settings, the registry, the tokens and the limiter."""

    settings: Settings
    registry: Registry
    book: TokenBook
    limiter: LoginLimiter
    templates: Jinja2Templates


def _console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def _render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    session = request.session
    context |= {"user": session.get("name"), "role": session.get("role"),
                "csrf": session.get("csrf"), "domains": DOMAINS}  # fmt: skip
    return _console(request).templates.TemplateResponse(
        request, template, context, status_code=status_code
    )


def _domain(request: Request) -> Domain:
    name = request.path_params["domain"]
    for domain in DOMAINS:
        if domain == name:
            return domain
    raise _NotFoundError(name)


class _NotFoundError(InferloopError): ...


Page = Callable[[Request], Response]


def page(handler: Page) -> Page:
    """A page for anyone logged in; the login page otherwise."""

    def guarded(request: Request) -> Response:
        if not request.session.get("role"):
            return RedirectResponse("/login", status_code=303)
        try:
            return handler(request)
        except _NotFoundError:
            return PlainTextResponse("not found", status_code=404)

    return guarded


# -- login -------------------------------------------------------------------------------
def login_form(request: Request) -> Response:
    """The login page; it gives the session its CSRF token."""
    request.session.setdefault("csrf", csrf_token())
    return _render(request, "login.html")


async def login(request: Request) -> Response:
    """Check a token; a session for its owner, or the form again (429 when rate limited)."""
    console = _console(request)
    client = request.client.host if request.client else "?"
    form = await request.form()
    if not same_token(str(form.get("csrf", "")), request.session.get("csrf")):
        return PlainTextResponse("CSRF token missing or wrong", status_code=403)
    if console.limiter.blocked(client):
        return _render(request, "login.html", 429, error="too many failed logins; wait a minute")
    who = await run_in_threadpool(console.book.identify, str(form.get("token", "")))
    if who is None:
        console.limiter.failed(client)
        log.warning("console: failed login from %s", client)
        return _render(request, "login.html", 401, error="unknown token")
    request.session.clear()
    request.session.update({"name": who.name, "role": who.role, "csrf": csrf_token()})
    log.info("console: %s logged in as %s from %s", who.name, who.role, client)
    return RedirectResponse("/", status_code=303)


async def logout(request: Request) -> Response:
    """End the session."""
    form = await request.form()
    if same_token(str(form.get("csrf", "")), request.session.get("csrf")):
        request.session.clear()
    return RedirectResponse("/login", status_code=303)


# -- pages -------------------------------------------------------------------------------
@page
def overview(request: Request) -> Response:
    """Page 1: every domain at a glance."""
    console = _console(request)
    rows = [views.overview(console.settings, console.registry, d) for d in DOMAINS]
    return _render(request, "overview.html", overviews=rows, cells=views.figure_cells)


@page
def versions(request: Request) -> Response:
    """Page 2: every version of a domain's model."""
    domain = _domain(request)
    registry = _console(request).registry
    status = views.attempt("monitor status", lambda: views.monitor_status(registry, domain))
    return _render(
        request, "versions.html", domain=domain, versions=views.versions(registry, domain),
        live=views.live_by_version(status.value), gate_reason=views.gate_reason,
        cells=views.figure_cells,
    )  # fmt: skip


@page
def version(request: Request) -> Response:
    """Page 3: one version: lineage, report, live quality, its history."""
    domain, number = _domain(request), int(request.path_params["version"])
    registry = _console(request).registry
    found = views.attempt("version", lambda: registry.get_version(domain, number))
    if found.value is None:
        return PlainTextResponse("not found", status_code=404)
    report = views.attempt("report", lambda: registry.get_report(domain, number))
    status = views.attempt("monitor status", lambda: views.monitor_status(registry, domain))
    entries = [e for e in views.history(registry, domain) if e.version == number]
    predicted = views.attempt(
        "predictions", lambda: views.predictions_count(registry, domain, number)
    )
    return _render(
        request, "version.html", domain=domain, v=found.value, report=sorted(report.value or {}),
        live=views.live_by_version(status.value).get(number), history=entries,
        gate_reason=views.gate_reason(found.value), images=_IMAGE_TYPES,
        cells=views.figure_cells, predicted=predicted.value or {},
        plots=("f1", "target_value", "auprc"),
    )  # fmt: skip


@page
def live_plot(request: Request) -> Response:
    """A version's live figure over time against its holdout figure, as SVG."""
    domain, number = _domain(request), int(request.path_params["version"])
    figure = request.path_params["figure"]
    registry = _console(request).registry
    found = registry.get_version(domain, number)
    if figure not in liveplot.FIGURES or found is None:
        return PlainTextResponse("not found", status_code=404)
    points = views.attempt("history", lambda: views.live_history(registry, domain, number))
    metric = liveplot.holdout_name(domain, figure)
    holdout = found.metrics.get(metric) if metric else None
    target = points.value[-1].target if points.value else "target"
    label = target if figure == "target_value" else figure
    drawn = liveplot.svg(
        f"{domain} v{number}: live {label} (window by positives) against the holdout's "
        f"{metric or '—'}", points.value or [], figure,
        float(holdout) if isinstance(holdout, (int, float)) else None,
    )  # fmt: skip
    return Response(drawn, media_type="image/svg+xml")


@page
def report_file(request: Request) -> Response:
    """A file of a version's report: images as themselves, anything else as plain text."""
    domain, number = _domain(request), int(request.path_params["version"])
    name = request.path_params["file"]
    files = _console(request).registry.get_report(domain, number)
    if name not in files:
        return PlainTextResponse("not found", status_code=404)
    media = _IMAGE_TYPES.get(Path(name).suffix, "text/plain; charset=utf-8")
    return Response(files[name], media_type=media, headers={"content-disposition": "inline"})


@page
def timeline_page(request: Request) -> Response:
    """Page 4: the champion over time: promotions, rejections, rollbacks, alarms."""
    domain = _domain(request)
    registry = _console(request).registry
    status = views.attempt("monitor status", lambda: views.monitor_status(registry, domain))
    drift = views.attempt("drift alarms", lambda: views.drift_alarms(registry, domain))
    kept = views.attempt("monitor actions", lambda: views.monitor_actions(registry, domain))
    return _render(
        request, "timeline.html", domain=domain, history=views.history(registry, domain),
        alarms=(status.value or {}).get("alarms", []), drift=drift, kept=kept,
    )  # fmt: skip


@page
def timeline_plot(request: Request) -> Response:
    """The timeline as SVG (drawn from the history now)."""
    domain = _domain(request)
    registry = _console(request).registry
    drift = views.attempt("drift alarms", lambda: views.drift_alarms(registry, domain))
    kept = views.attempt("monitor actions", lambda: views.monitor_actions(registry, domain))
    drawn = timeline.svg(
        domain, views.history(registry, domain), drift.value or [], kept.value or []
    )
    return Response(drawn, media_type="image/svg+xml")


@page
def dead_letters(request: Request) -> Response:
    """Page 5: a domain's dead letters, by reason."""
    domain = _domain(request)
    reason = request.query_params.get("reason") or None
    try:
        before = views.parse_offsets(request.query_params.get("before"))
    except ValueError:
        return PlainTextResponse("bad page cursor", status_code=400)
    settings = _console(request).settings
    read = views.attempt("dead letters", lambda: views.letters(settings, domain, reason, before))
    shown, counts = read.value or (None, None)
    return _render(
        request, "letters.html", domain=domain, reason=reason, error=read.error, page=shown,
        counts=counts, cursor=views.format_offsets, first=before is None,
    )  # fmt: skip


@page
def dead_letter(request: Request) -> Response:
    """One dead letter, its value shown as escaped, truncated text."""
    domain, coordinates = _domain(request), request.path_params["coordinates"]
    found = views.letter(_console(request).settings, domain, coordinates)
    if found is None:
        return PlainTextResponse("not found", status_code=404)
    return _render(
        request, "letter.html", domain=domain, letter=found, value=views.preview(found.value),
        key=views.preview(found.key),
    )  # fmt: skip


@page
def actions_page(request: Request) -> Response:
    """Page 6: the operator's forms."""
    registry = _console(request).registry
    aliases = {d: views.overview_aliases(registry, d) for d in DOMAINS}
    return _render(request, "actions.html", aliases=aliases)


# -- actions -----------------------------------------------------------------------------
Act = Callable[[Console, Domain, dict[str, str], str], str]


def _act_promote(console: Console, domain: Domain, form: dict[str, str], name: str) -> str:
    entry = actions.promote(console.registry, domain, int(form["version"]), form["reason"], name)
    return f"{domain}: champion is now v{entry.version}"


def _act_rollback(console: Console, domain: Domain, form: dict[str, str], name: str) -> str:
    entry = actions.rollback(console.registry, domain, form["reason"], name)
    return f"{domain}: rolled back to v{entry.version}"


def _act_retire(console: Console, domain: Domain, form: dict[str, str], name: str) -> str:
    actions.retire_challenger(console.registry, domain, form["reason"], name)
    return f"{domain}: challenger retired"


def _act_retrain(console: Console, domain: Domain, form: dict[str, str], name: str) -> str:
    trigger = actions.trigger_retrain(console.registry, domain, form["reason"], name)
    return f"{domain}: retrain trigger {trigger} queued"


def _act_redrive(console: Console, domain: Domain, form: dict[str, str], name: str) -> str:
    chosen = [c for c in form.get("letters", "").split(",") if c]
    result = actions.redrive_letters(console.settings, domain, chosen, form["reason"], name)
    return f"{domain}: {result.sent} letters redriven, {result.skipped} skipped"


ACTIONS: dict[str, Act] = {
    "promote": _act_promote,
    "rollback": _act_rollback,
    "retire-challenger": _act_retire,
    "retrain": _act_retrain,
    "redrive": _act_redrive,
}


async def act(request: Request) -> Response:
    """Run one action: operator role, CSRF token, a reason and the confirmation box."""
    session = request.session
    form = await _form(request)
    refusal = _refusal(request, form)
    if refusal is not None:
        return refusal
    handler = ACTIONS.get(request.path_params["action"])
    if handler is None:
        return PlainTextResponse("no such action", status_code=404)
    domain = _domain(request) if request.path_params.get("domain") in DOMAINS else None
    if domain is None:
        return PlainTextResponse("no such domain", status_code=404)
    try:
        done = await run_in_threadpool(handler, _console(request), domain, form, session["name"])
    except (InferloopError, ValueError, KeyError) as exc:
        return _render(request, "done.html", 409, ok=False, message=f"{type(exc).__name__}: {exc}")
    return _render(request, "done.html", ok=True, message=done)


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    fields = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    chosen = [str(v) for v in form.getlist("letter")]
    if chosen:
        fields["letters"] = ",".join(chosen)
    return fields


def _refusal(request: Request, form: dict[str, str]) -> Response | None:
    session = request.session
    if not session.get("role"):
        return RedirectResponse("/login", status_code=303)
    if not same_token(form.get("csrf"), session.get("csrf")):
        return PlainTextResponse("CSRF token missing or wrong", status_code=403)
    if session.get("role") != "operator":
        return _render(request, "done.html", 403, ok=False, message="viewers cannot act")
    if form.get("confirm") != "yes":
        return _render(request, "done.html", 400, ok=False, message="confirm the action")
    return None


def _routes() -> list[Route | Mount]:
    return [
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", overview),
        Route("/versions/{domain}", versions),
        Route("/versions/{domain}/{version:int}", version),
        Route("/versions/{domain}/{version:int}/report/{file}", report_file),
        Route("/versions/{domain}/{version:int}/live/{figure}.svg", live_plot),
        Route("/timeline/{domain}", timeline_page),
        Route("/timeline/{domain}/plot.svg", timeline_plot),
        Route("/dlq/{domain}", dead_letters),
        Route("/dlq/{domain}/{coordinates}", dead_letter),
        Route("/actions", actions_page),
        Route("/actions/{action}/{domain}", act, methods=["POST"]),
        Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
    ]


def create_app(settings: Settings, registry: Registry, *, tls: bool | None = None) -> Starlette:
    """The console's ASGI app for ``settings`` (``tls``: whether it is served over HTTPS)."""
    section = settings.console
    https = tls if tls is not None else section.tls_certfile is not None
    secret = section.session_secret.get_secret_value() if section.session_secret else None
    hosts = sorted({*section.allowed_hosts, section.host})
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    console = Console(
        settings, registry, TokenBook.from_settings(section),
        LoginLimiter(section.login_failures_max, section.login_failure_window_s),
        Jinja2Templates(env=env),
    )  # fmt: skip
    app = Starlette(
        routes=_routes(),
        middleware=[
            Middleware(TrustedHostMiddleware, allowed_hosts=hosts),
            Middleware(Guards, scheme="https" if https else "http"),
            Middleware(
                SessionMiddleware,
                secret_key=secret or secrets.token_urlsafe(32),
                session_cookie="inferloop_console",
                max_age=section.session_max_age_s,
                same_site="strict",
                https_only=https,
            ),
        ],
    )
    app.state.console = console
    return app
