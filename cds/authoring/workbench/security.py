"""What keeps another web page from driving the workbench: a pure ASGI guard in front of the app.

The workbench writes rule files, so a page on another origin (or a DNS-rebound name) must not be
able to make a pharmacist's browser save anything. Every request is checked here, before routing,
so no route can forget it:

* ``Host`` must name the address the server is bound to (``127.0.0.1:PORT``, ``localhost:PORT``
  for a loopback bind, or the hosts given explicitly): a rebound name such as ``evil.example:PORT``
  is refused (DNS rebinding).
* Every state-changing request (any method but GET, HEAD, OPTIONS) must carry ``Origin`` (or, when
  absent, ``Referer``) of the bound origin when present (``Origin: null`` is refused), and the
  session's CSRF token in the ``csrf`` form field or the ``X-CSRF-Token`` header. The token is an
  HMAC of the session cookie under a per-process secret, so a page that plants a cookie still
  cannot know the token.
* Every response carries ``X-Frame-Options: DENY``, a strict ``Content-Security-Policy`` (scripts
  and styles only from the workbench itself, no framing), ``X-Content-Type-Options: nosniff`` and
  ``Referrer-Policy: same-origin`` (no Referer ever leaves the workbench; ``no-referrer`` would
  make Chromium send ``Origin: null`` on the workbench's own form posts, so the Origin check could
  not tell them from a sandboxed attacker frame).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from markupsafe import escape
from starlette.datastructures import Headers
from starlette.requests import Request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_COOKIE = "cds_workbench_session"
TOKEN_FIELD = "csrf"
TOKEN_HEADER = "x-csrf-token"
MAX_BODY = 20 * 1024 * 1024  # an uploaded bundle; anything larger is refused before parsing
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)


def _host_key(host: str, port: int) -> set[str]:
    """The Host header values that name ``host:port`` (the port may be left out for 80)."""
    name = f"[{host}]" if ":" in host else host
    keys = {f"{name}:{port}".lower()}
    if port == 80:
        keys.add(name.lower())
    return keys


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def allowed_hosts(server: tuple[str, int] | None, extra: Iterable[str] = ()) -> set[str]:
    """Host values accepted for a server socket: its address (plus ``localhost`` when it is a
    loopback address) and any hosts configured explicitly."""
    allowed = {h.lower() for h in extra}
    if server is None:
        return allowed
    host, port = server
    allowed |= _host_key(host, port)
    if _is_loopback(host):
        for alias in ("localhost", "127.0.0.1", "::1"):
            allowed |= _host_key(alias, port)
    return allowed


def token_for(secret: bytes, session: str) -> str:
    """The CSRF token of a session: HMAC-SHA256 of the session id under the process secret."""
    return hmac.new(secret, session.encode(), hashlib.sha256).hexdigest()


class Guard:
    """ASGI middleware enforcing the Host, Origin and CSRF checks and adding security headers."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str] = (), secret: bytes | None = None) -> None:
        self.app = app
        self.hosts = frozenset(h.lower() for h in hosts)
        self.secret = secret or secrets.token_bytes(32)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        allowed = allowed_hosts(scope.get("server"), self.hosts)
        host = headers.get("host", "").lower()
        session = Request(scope).cookies.get(SESSION_COOKIE, "")
        fresh = None
        if not (20 <= len(session) <= 100 and session.replace("-", "").replace("_", "").isalnum()):
            fresh = session = secrets.token_urlsafe(32)
        token = token_for(self.secret, session)
        scope.setdefault("state", {})["csrf"] = token
        problem: str | None = None
        if host not in allowed:
            problem = (
                f"Host {host or '(none)'} is not the address this workbench is bound to "
                f"({', '.join(sorted(allowed)) or 'none configured'}): refused (DNS rebinding guard)"
            )
        elif scope["method"] not in SAFE_METHODS:
            problem = _origin_problem(headers, allowed)
            if problem is None:
                body = await _read_body(receive, headers)
                if body is None:
                    await _respond(send, 413, "The request body is larger than the workbench accepts.")
                    return
                receive = _replay(body)
                given = headers.get(TOKEN_HEADER) or await _form_token(scope, body)
                if fresh is not None:
                    problem = "no workbench session: reload the page (cookies must be enabled), then retry"
                elif not given or not hmac.compare_digest(given.encode(), token.encode()):
                    problem = (
                        "missing or wrong CSRF token: this request did not come from a workbench page "
                        "you opened; reload the page and retry"
                    )
        if problem is not None:
            await _respond(send, 403, problem)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = list(SECURITY_HEADERS)
                if fresh is not None:
                    extra.append(
                        (
                            b"set-cookie",
                            f"{SESSION_COOKIE}={fresh}; Path=/; HttpOnly; SameSite=Strict".encode(),
                        )
                    )
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _origin_problem(headers: Headers, allowed: set[str]) -> str | None:
    """Why the Origin (else Referer) of a state-changing request is not the workbench's, if it is not."""
    origin = headers.get("origin")
    referer = headers.get("referer")
    if origin is not None:
        source, label = origin, "Origin"
    elif referer is not None:
        source, label = referer, "Referer"
    else:
        return None  # a non-browser client: the CSRF token still decides
    parts = urlsplit(source)
    if source == "null" or parts.scheme != "http" or (parts.netloc or "").lower() not in allowed:
        return f"{label} {source!r} is not this workbench: cross-origin request refused"
    return None


async def _read_body(receive: Receive, headers: Headers) -> bytes | None:
    """The whole request body, or None when it is above ``MAX_BODY``."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    """A ``receive`` that hands the buffered body to the app, then reports a disconnect."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


async def _form_token(scope: Scope, body: bytes) -> str | None:
    """The ``csrf`` field of a urlencoded or multipart body (None for other bodies)."""
    kind = Headers(scope=scope).get("content-type", "")
    if not kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        return None
    request = Request(scope, receive=_replay(body))
    try:
        form = await request.form()
    except Exception:  # an unparsable body simply carries no token (then the request is refused)
        return None
    try:
        value = form.get(TOKEN_FIELD)
        return value if isinstance(value, str) else None
    finally:
        await form.close()


async def _respond(send: Send, status: int, message: str) -> None:
    """A small HTML page stating why the request was refused, with the security headers."""
    body = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Refused</title></head>"
        f"<body><h1>{status}</h1><p id='error'>{escape(message)}</p></body></html>"
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
