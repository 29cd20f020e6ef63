"""HTTP hardening around the whole app: `Host` allow-list (DNS rebinding), same-origin checks
on state-changing requests and WebSocket handshakes (CSRF, cross-site WebSocket hijacking), and
security headers on every response.

The checks are pure functions of the request's method and headers (tested as such);
:class:`SecurityMiddleware` applies them before any route runs.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.auth.store import BEARER_TTL_S, SESSION_TTL_S

SESSION_COOKIE: Final = "xixin_session"
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})

#: The console's pages load scripts and styles from their own origin, talk to it only (HTTP and
#: WebSockets), and nothing may frame them; images may also come from a map tile server.
CSP: Final = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:{images}; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'; object-src 'none'"
)


def content_security_policy(image_origins: Iterable[str] = ()) -> str:
    return CSP.format(images="".join(f" {origin}" for origin in image_origins))


SECURITY_HEADERS: Final = (
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)
HSTS: Final = (b"strict-transport-security", b"max-age=31536000")


@dataclass(frozen=True, slots=True)
class HttpSecurity:
    """How the API is served: which `Host` names it answers to, over TLS or not, token lives."""

    allowed_hosts: frozenset[str] = LOOPBACK_HOSTS
    tls: bool = False
    session_ttl_s: float = SESSION_TTL_S
    bearer_ttl_s: float = BEARER_TTL_S
    login_max_failures: int = 5
    login_window_s: float = 300.0
    login_lockout_s: float = 300.0
    image_origins: tuple[str, ...] = ()  # a map tile server's origin (ConsoleSettings)


def allowed_hosts_for(listen_host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The `Host` names for a console listening on `listen_host`: loopback names, that address,
    for a wildcard address this machine's name, and what the operator added."""
    hosts = set(LOOPBACK_HOSTS) | {h.strip().lower() for h in extra if h.strip()}
    hosts.add(listen_host.strip("[]").lower())
    try:
        wildcard = ipaddress.ip_address(listen_host.strip("[]")).is_unspecified
    except ValueError:
        wildcard = False
    if wildcard:
        name = socket.gethostname().lower()
        hosts |= {name, socket.getfqdn().lower()}
    return frozenset(hosts)


def host_name(host_header: str) -> str:
    """The name in a `Host` header without its port (`[::1]:8080` -> `::1`)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(host_header: str | None, allowed: frozenset[str]) -> bool:
    return host_header is not None and host_name(host_header) in allowed


def same_origin(origin: str, host_header: str) -> bool:
    """Whether an `Origin` (or `Referer`) URL names the host and port the request went to."""
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host_header.lower()


def request_problem(
    method: str,
    headers: Mapping[str, str],
    *,
    websocket: bool,
    allowed_hosts: frozenset[str],
) -> tuple[int, str] | None:
    """Why a request is refused before any route sees it, as (status, reason); None: go on.

    - `Host` must be one of ours (a rebound DNS name is not).
    - A WebSocket handshake or a state-changing request that carries an `Origin` must come from
      our own origin.
    - A state-changing request that carries the session cookie must prove it comes from our
      own pages: `Origin`, or failing that `Referer`, of our origin. (Bearer tokens are never
      sent by a browser on its own, so requests carrying only those need no such proof.)
    """
    host = headers.get("host")
    if not host_allowed(host, allowed_hosts):
        return 400, "unknown Host"
    assert host is not None
    origin = headers.get("origin")
    unsafe = websocket or method.upper() not in SAFE_METHODS
    if not unsafe:
        return None
    if origin is not None and origin != "null":
        return None if same_origin(origin, host) else (403, "cross-origin request refused")
    if origin == "null":
        return 403, "cross-origin request refused"
    if not websocket and SESSION_COOKIE in headers.get("cookie", ""):
        referer = headers.get("referer")
        if referer is None or not same_origin(referer, host):
            return 403, "a state-changing request with a session needs Origin or Referer"
    return None


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, security: HttpSecurity) -> None:
        self.app = app
        self.security = security
        csp = content_security_policy(security.image_origins)
        headers = [(b"content-security-policy", csp.encode()), *SECURITY_HEADERS]
        if security.tls:
            headers.append(HSTS)
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        websocket = scope["type"] == "websocket"
        problem = request_problem(
            scope.get("method", "GET"),
            headers,
            websocket=websocket,
            allowed_hosts=self.security.allowed_hosts,
        )
        if problem is not None:
            await self._refuse(scope, send, *problem)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers if not websocket else send)

    async def _refuse(self, scope: Scope, send: Send, status: int, reason: str) -> None:
        body = reason.encode()
        start = {
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *self.headers,
            ],
        }
        if scope["type"] == "http":
            await send({"type": "http.response.start", **start})
            await send({"type": "http.response.body", "body": body})
        elif "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", **start})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008, "reason": reason})
