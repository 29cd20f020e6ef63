"""The pure HTTP checks (gateway.api.security): Host allow-list, same-origin rules."""

from __future__ import annotations

import pytest

from gateway.api.security import (
    LOOPBACK_HOSTS,
    SESSION_COOKIE,
    allowed_hosts_for,
    host_name,
    request_problem,
)


@pytest.mark.parametrize(
    ("header", "name"),
    [("localhost:8080", "localhost"), ("[::1]:8080", "::1"), ("EXAMPLE.org", "example.org"),
     ("10.0.0.5", "10.0.0.5")],
)  # fmt: skip
def test_host_name(header: str, name: str) -> None:
    assert host_name(header) == name


def test_allowed_hosts() -> None:
    assert allowed_hosts_for("127.0.0.1") == LOOPBACK_HOSTS
    assert "gw.example" in allowed_hosts_for("10.0.0.5", ["GW.example"])
    assert "10.0.0.5" in allowed_hosts_for("10.0.0.5")


HOSTS = frozenset({"localhost"})
COOKIE = {"cookie": f"{SESSION_COOKIE}=x"}
CASES = [
    # (method, headers, websocket, refused with)
    ("GET", {"host": "localhost:8080"}, False, None),
    ("GET", {"host": "evil.example"}, False, 400),
    ("GET", {}, False, 400),
    ("POST", {"host": "localhost:8080"}, False, None),  # no cookie: a script with a token
    ("POST", {"host": "localhost:8080", **COOKIE}, False, 403),  # no Origin, no Referer
    ("POST", {"host": "localhost:8080", "origin": "http://localhost:8080", **COOKIE}, False, None),
    ("POST", {"host": "localhost:8080", "origin": "http://localhost:9999", **COOKIE}, False, 403),
    ("POST", {"host": "localhost:8080", "origin": "null"}, False, 403),
    ("POST", {"host": "localhost:8080", "referer": "http://localhost:8080/x", **COOKIE}, False,
     None),
    ("DELETE", {"host": "localhost:8080", "origin": "http://evil.example"}, False, 403),
    ("GET", {"host": "localhost:8080", "origin": "http://evil.example"}, True, 403),
    ("GET", {"host": "localhost:8080", "origin": "http://localhost:8080"}, True, None),
    ("GET", {"host": "localhost:8080"}, True, None),  # not a browser: credentials decide
]  # fmt: skip


@pytest.mark.parametrize(("method", "headers", "websocket", "status"), CASES)
def test_request_problem(
    method: str, headers: dict[str, str], websocket: bool, status: int | None
) -> None:
    problem = request_problem(method, headers, websocket=websocket, allowed_hosts=HOSTS)
    assert (problem[0] if problem else None) == status
