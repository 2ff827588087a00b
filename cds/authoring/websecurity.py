"""Request guard for the local workbench: Host and Origin pinning, CSRF tokens, security headers.

The workbench writes rule files, so a page on any other site must not be able to drive it:

* every request must carry ``Host`` equal to the bound ``host:port`` (a DNS-rebinding page reaches
  the loopback port under its own name and is refused);
* every state-changing request must come from the workbench's own origin (``Origin``, or
  ``Referer`` when a browser sends no ``Origin``) and carry the per-session CSRF token, an HMAC
  of the session cookie under a key that lives only in this process;
* every response forbids framing and carries a Content-Security-Policy that allows only the
  workbench's own static scripts and styles (no inline code).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

SESSION_COOKIE = "cds_wb_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Refused(Exception):
    """A request the guard will not serve; ``str()`` says why, for the 403 body."""


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class Guard:
    """Host/Origin pinning and CSRF tokens for one workbench bound to ``host:port``."""

    def __init__(self, host: str, port: int) -> None:
        if host in ("0.0.0.0", "::", ""):
            raise ValueError(
                "the workbench binds to one address (e.g. 127.0.0.1), not to every interface: "
                "it writes rule files and has no login"
            )
        names = {_netloc(host, port)}
        if _is_loopback(host):
            names.add(_netloc("localhost", port))
        self.hosts = frozenset(names)
        self.origins = frozenset(f"http://{n}" for n in names)
        self._key = secrets.token_bytes(32)

    def token(self, session: str) -> str:
        """The CSRF token of one session (never stored: recomputed from the cookie)."""
        return hmac.new(self._key, session.encode(), hashlib.sha256).hexdigest()

    def check_host(self, request: Request) -> None:
        """Refuse a Host header other than the bound address (DNS rebinding)."""
        host = request.headers.get("host", "")
        if host not in self.hosts:
            raise Refused(f"Host {host!r} is not this workbench ({', '.join(sorted(self.hosts))})")

    def check_origin(self, request: Request) -> None:
        """Refuse a state-changing request that does not come from the workbench's own pages."""
        origin = request.headers.get("origin")
        if origin is not None:
            if origin not in self.origins:
                raise Refused(f"cross-origin request from {origin!r} refused")
            return
        referer = request.headers.get("referer", "")
        if not any(referer.startswith(o + "/") for o in self.origins):
            raise Refused("request without an Origin or Referer of this workbench refused")

    async def check_csrf(self, request: Request) -> None:
        """Refuse a state-changing request without this session's token (form field or header)."""
        session = request.cookies.get(SESSION_COOKIE, "")
        sent = request.headers.get(CSRF_HEADER)
        if sent is None:
            form = await request.form()
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
        if not session or not sent or not hmac.compare_digest(sent, self.token(session)):
            raise Refused("missing or wrong CSRF token: reload the workbench page and try again")

    def install(self, app: FastAPI) -> None:
        """Add the guard as middleware: Host on every request, Origin on unsafe ones, headers on all."""

        @app.middleware("http")
        async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            session = request.cookies.get(SESSION_COOKIE)
            try:
                self.check_host(request)
                if request.method in UNSAFE_METHODS:
                    self.check_origin(request)
                request.state.session = session or secrets.token_urlsafe(32)
                response = await call_next(request)
            except Refused as exc:
                response = PlainTextResponse(f"Refused: {exc}", status_code=403)
            if not session and getattr(request.state, "session", None):
                response.set_cookie(
                    SESSION_COOKIE, request.state.session, httponly=True, samesite="strict", path="/"
                )
            for name, value in HEADERS.items():
                response.headers[name] = value
            return response
