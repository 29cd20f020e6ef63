"""Who is calling: the session cookie (browsers) or a bearer token (scripts), resolved to an
account and its scope. `CurrentAccount` (401 without valid credentials) guards every route
but the login page, the login/token routes and the anonymous part of /api/health."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import Depends, HTTPException
from starlette.requests import HTTPConnection

from gateway.api.security import SESSION_COOKIE
from gateway.api.services.access import SignedIn
from gateway.auth.scope import scope_of
from gateway.service import GatewayService


def credentials(conn: HTTPConnection) -> tuple[str, Literal["session", "bearer"]] | None:
    """The token a request carries and its kind: `Authorization: Bearer` first, then the
    session cookie."""
    header = conn.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip(), "bearer"
        return None
    cookie = conn.cookies.get(SESSION_COOKIE)
    return (cookie, "session") if cookie else None


async def resolve(conn: HTTPConnection) -> SignedIn | None:
    """The signed-in caller of a request or WebSocket handshake, or None."""
    found = credentials(conn)
    if found is None:
        return None
    token, kind = found
    service: GatewayService = conn.app.state.service
    account = await asyncio.to_thread(service.accounts.account_for_token, token, kind)
    if account is None:
        return None
    return SignedIn(account, scope_of(account.role, service.org), kind)


async def current_account(conn: HTTPConnection) -> SignedIn:
    caller = await resolve(conn)
    if caller is None:
        raise HTTPException(
            401, "sign in first", headers={"WWW-Authenticate": 'Bearer realm="xixin"'}
        )
    return caller


async def optional_account(conn: HTTPConnection) -> SignedIn | None:
    return await resolve(conn)


CurrentAccount = Annotated[SignedIn, Depends(current_account)]
OptionalAccount = Annotated[SignedIn | None, Depends(optional_account)]
