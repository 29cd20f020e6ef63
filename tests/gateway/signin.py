"""Signing a TestClient in: an account of a role, a session cookie, and the same-origin
`Origin` header a browser sends (the app refuses cookie-carrying POSTs without it)."""

from __future__ import annotations

import time

from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.service import GatewayService

BASE_URL = "http://localhost"  # a loopback name: on the default Host allow-list
ORIGIN = BASE_URL


def account_name(role: str) -> str:
    return role.replace(":", "-").replace("area-", "a-").replace("grid-", "g-")[:24]


def client(app: FastAPI) -> TestClient:
    return TestClient(app, base_url=BASE_URL)


def add_account(service: GatewayService, role: str, name: str | None = None) -> tuple[str, str]:
    account, password = service.accounts.add(name or account_name(role), role)
    return account.name, password


def sign_in(
    http: TestClient, service: GatewayService, role: str = "admin", name: str | None = None
) -> str:
    """Sign `http` in with a new account of `role` (session cookie); its name."""
    name, password = add_account(service, role, name)
    http.cookies.clear()
    answer = http.post(
        "/api/auth/login",
        json={"username": name, "password": password},
        headers={"Origin": ORIGIN},
    )
    assert answer.status_code == 200, answer.text
    http.headers["Origin"] = ORIGIN
    settle_audit(service)
    return name


def settle_audit(service: GatewayService, timeout: float = 5.0) -> None:
    """Wait until the audit rows written so far are stored (tests that then lock the
    database must not catch the sign-in's row in flight)."""
    deadline = time.monotonic() + timeout
    while service.audit.backlog and time.monotonic() < deadline:
        time.sleep(0.02)


def bearer(http: TestClient, service: GatewayService, role: str, name: str | None = None) -> str:
    """A bearer token of a new account of `role`."""
    name, password = add_account(service, role, name)
    answer = http.post(
        "/api/auth/token", data={"grant_type": "password", "username": name, "password": password}
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token
