"""Request guards around every route: the Origin check on POSTs and the security headers.

The Host allowlist (against DNS rebinding) is Starlette's ``TrustedHostMiddleware``,
placed outside this one, so the Origin compared here is checked against an allowed Host.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# No inline script or style anywhere: the one stylesheet ships in the package.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Guards:
    """Refuses a state-changing request from another origin; adds the security headers."""

    def __init__(self, app: ASGIApp, *, scheme: str) -> None:
        self.app = app
        self.scheme = scheme

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] in _UNSAFE and not self.same_origin(Headers(scope=scope)):
            refusal = PlainTextResponse("cross-origin request refused", status_code=403)
            await refusal(scope, receive, self._with_headers(send))
            return
        await self.app(scope, receive, self._with_headers(send))

    def same_origin(self, headers: Headers) -> bool:
        """Whether the request's Origin is this console's own (scheme and Host)."""
        origin = headers.get("origin")
        host = headers.get("host")
        return bool(origin and host) and origin == f"{self.scheme}://{host}"

    @staticmethod
    def _with_headers(send: Send) -> Send:
        async def sender(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *SECURITY_HEADERS]
            await send(message)

        return sender
