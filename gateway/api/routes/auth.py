"""Sign-in: the login page, a session cookie for the browser, bearer tokens for scripts (OAuth2
password flow), sign-out, who am I, changing one's own password, and the admins' account API."""

from __future__ import annotations

import asyncio
import json
from importlib import resources
from typing import Annotated, Any, Final
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field

from gateway.api.auth import CurrentAccount, credentials
from gateway.api.security import SESSION_COOKIE, HttpSecurity
from gateway.api.services.accounts import AccountsService, SignIn, account_json
from gateway.auth.scope import ACTIONS
from gateway.auth.store import MAX_BEARER_TTL_S
from gateway.service import GatewayService

router = APIRouter(tags=["auth"])
MAX_FORM_BYTES: Final = 8192
LOGIN_PAGE: Final = resources.files("gateway.console").joinpath("login.html").read_text("utf-8")


def _security(request: Request) -> HttpSecurity:
    security: HttpSecurity = request.app.state.security
    return security


def _service(request: Request) -> GatewayService:
    service: GatewayService = request.app.state.service
    return service


def get_sign_in(request: Request) -> SignIn:
    service = _service(request)
    state = request.app.state
    return SignIn(service.accounts, service.audit, state.throttle, state.ip_throttle)


def get_accounts(request: Request, caller: CurrentAccount) -> AccountsService:
    service = _service(request)
    return AccountsService(service.accounts, service.audit, caller)


SignInDep = Annotated[SignIn, Depends(get_sign_in)]
AccountsDep = Annotated[AccountsService, Depends(get_accounts)]


async def _form(request: Request) -> tuple[dict[str, str], bool]:
    """The fields of a form (urlencoded) or JSON body, and whether it was a form."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(413, "too large")
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = json.loads(body or b"{}")
        except ValueError as exc:
            raise HTTPException(422, "not JSON") from exc
        if not isinstance(data, dict):
            raise HTTPException(422, "expected a JSON object")
        return {str(k): str(v) for k, v in data.items() if v is not None}, False
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError) as exc:
        raise HTTPException(422, "not a form") from exc
    return {k: v[0] for k, v in fields.items()}, True


def _client(request: Request) -> str:
    return request.client.host if request.client else "-"


@router.get("/login", include_in_schema=False)
async def login_page() -> HTMLResponse:
    return HTMLResponse(LOGIN_PAGE)


@router.post("/api/auth/login")
async def login(request: Request, sign_in: SignInDep) -> Response:
    """Browser sign-in: a session cookie (HttpOnly, SameSite=Strict, Secure under TLS). A form
    post is redirected to the console (or back to the login page); JSON gets JSON."""
    fields, is_form = await _form(request)
    security = _security(request)
    try:
        account, token, _ = await sign_in.sign_in(
            fields.get("username", ""), fields.get("password", ""), _client(request),
            "session", security.session_ttl_s,
        )  # fmt: skip
    except HTTPException as exc:
        if not is_form:
            raise
        error = "locked" if exc.status_code == 429 else "failed"
        return RedirectResponse(f"/login?error={error}", status_code=303)
    response: Response = (
        RedirectResponse("/", status_code=303)
        if is_form
        else Response(json.dumps(account_json(account)), media_type="application/json")
    )
    response.set_cookie(
        SESSION_COOKIE, token, max_age=int(security.session_ttl_s), path="/",
        httponly=True, samesite="strict", secure=security.tls,
    )  # fmt: skip
    return response


@router.post("/api/auth/token")
async def token(request: Request, sign_in: SignInDep) -> dict[str, Any]:
    """Bearer token for scripts (OAuth2 password grant): `username`, `password`, optionally
    `expires_in` seconds (at most 30 days; default one hour). Only its hash is stored."""
    fields, _ = await _form(request)
    if fields.get("grant_type", "password") != "password":
        raise HTTPException(400, "unsupported grant_type")
    try:
        ttl = float(fields.get("expires_in") or _security(request).bearer_ttl_s)
    except ValueError as exc:
        raise HTTPException(422, "expires_in is not a number") from exc
    if not 1 <= ttl <= MAX_BEARER_TTL_S:
        raise HTTPException(422, f"expires_in must be 1-{int(MAX_BEARER_TTL_S)} seconds")
    _, value, _ = await sign_in.sign_in(
        fields.get("username", ""), fields.get("password", ""), _client(request), "bearer", ttl
    )
    return {"access_token": value, "token_type": "bearer", "expires_in": int(ttl)}


@router.post("/api/auth/logout", status_code=204)
async def logout(request: Request, caller: CurrentAccount) -> Response:
    found = credentials(request)
    service = _service(request)
    if found is not None:
        await asyncio.to_thread(service.accounts.revoke_token, found[0])
    service.audit.record(caller.account.name, "sign_out", caller.via)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/api/auth/me")
async def me(caller: CurrentAccount) -> dict[str, Any]:
    return {
        **account_json(caller.account),
        "may": [a for a in ACTIONS if caller.scope.may(a)],
        "units": None if caller.scope.whole else sorted(caller.scope.units),
    }


class PasswordChange(BaseModel):
    old: str = Field(max_length=256)
    new: str = Field(max_length=256)


@router.post("/api/auth/password", status_code=204)
async def change_password(body: PasswordChange, accounts: AccountsDep) -> Response:
    await accounts.change_own_password(body.old, body.new)
    return Response(status_code=204)


# ---- accounts (admins) ---------------------------------------------------------------------


class AccountIn(BaseModel):
    name: str = Field(max_length=24)
    role: str = Field(max_length=48)


@router.get("/api/users")
async def list_users(accounts: AccountsDep) -> list[dict[str, Any]]:
    return await accounts.list()


@router.post("/api/users", status_code=201)
async def add_user(body: AccountIn, accounts: AccountsDep) -> dict[str, Any]:
    """A new account; its generated password is in the answer, only this once."""
    return await accounts.add(body.name, body.role)


@router.post("/api/users/{name}/disable")
async def disable_user(name: str, accounts: AccountsDep) -> dict[str, Any]:
    return await accounts.set_enabled(name, False)


@router.post("/api/users/{name}/enable")
async def enable_user(name: str, accounts: AccountsDep) -> dict[str, Any]:
    return await accounts.set_enabled(name, True)


@router.post("/api/users/{name}/reset")
async def reset_user(name: str, accounts: AccountsDep) -> dict[str, Any]:
    return await accounts.reset(name)
