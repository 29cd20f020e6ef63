"""Sign-in (throttled, audited) and account management (admins only, audited)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import HTTPException

from gateway.api.services.access import SignedIn
from gateway.auth.audit import AuditWriter
from gateway.auth.errors import AccountExistsError, InvalidAccountError, UnknownAccountError
from gateway.auth.store import Account, AccountStore, TokenKind
from gateway.auth.throttle import LoginThrottle


def account_json(account: Account) -> dict[str, Any]:
    return {
        "name": account.name,
        "role": str(account.role),
        "enabled": account.enabled,
        "created_at": account.created_at,
        "talker": account.talker if account.role.is_dispatcher else None,
    }


class SignIn:
    """Names are locked after a few failures; a client address after more (an office behind one
    NAT address holds many dispatchers), so one guesser cannot lock everyone out at once."""

    def __init__(
        self,
        store: AccountStore,
        audit: AuditWriter,
        throttle: LoginThrottle,
        ip_throttle: LoginThrottle,
    ) -> None:
        self._store = store
        self._audit = audit
        self._throttle = throttle
        self._ip_throttle = ip_throttle

    async def sign_in(
        self, name: str, password: str, client: str, kind: TokenKind, ttl_s: float
    ) -> tuple[Account, str, float]:
        """The account, a new token of `kind` and its expiry; 401 or 429 (locked out)."""
        user, address = (f"user:{name}",), (f"ip:{client}",)
        now = time.monotonic()
        waits = [
            w
            for w in (
                self._throttle.retry_after(user, now),
                self._ip_throttle.retry_after(address, now),
            )
            if w is not None
        ]
        wait = max(waits) if waits else None
        if wait is not None:
            self._audit.record(name[:64] or "-", "sign_in", kind, "locked", {"client": client})
            raise HTTPException(
                429, "too many failed sign-ins; try later",
                headers={"Retry-After": str(int(wait) + 1)},
            )  # fmt: skip
        account = await asyncio.to_thread(self._store.authenticate, name, password)
        if account is None:
            self._throttle.failed(user, time.monotonic())
            self._ip_throttle.failed(address, time.monotonic())
            self._audit.record(name[:64] or "-", "sign_in", kind, "denied", {"client": client})
            raise HTTPException(401, "wrong name or password")
        self._throttle.succeeded(user[0])
        token, expires = await asyncio.to_thread(self._store.issue_token, account, kind, ttl_s)
        self._audit.record(account.name, "sign_in", kind, "ok", {"client": client})
        return account, token, expires


class AccountsService:
    """Account management for administrators; changing one's own password for everyone."""

    def __init__(self, store: AccountStore, audit: AuditWriter, caller: SignedIn) -> None:
        self._store = store
        self._audit = audit
        self._caller = caller

    async def _run(self, action: str, target: str, call: Any, *args: Any) -> Any:
        try:
            result = await asyncio.to_thread(call, *args)
        except UnknownAccountError as exc:
            self._audit.record(self._caller.account.name, action, target, "failed")
            raise HTTPException(404, str(exc)) from exc
        except AccountExistsError as exc:
            self._audit.record(self._caller.account.name, action, target, "failed")
            raise HTTPException(409, str(exc)) from exc
        except InvalidAccountError as exc:
            self._audit.record(self._caller.account.name, action, target, "failed")
            raise HTTPException(422, str(exc)) from exc
        self._audit.record(self._caller.account.name, action, target, "ok")
        return result

    async def list(self) -> list[dict[str, Any]]:
        self._caller.require("accounts")
        return [account_json(a) for a in await asyncio.to_thread(self._store.list)]

    async def add(self, name: str, role: str) -> dict[str, Any]:
        self._caller.require("accounts")
        account, password = await self._run("account_add", name, self._store.add, name, role, None)
        return {**account_json(account), "password": password}

    async def set_enabled(self, name: str, enabled: bool) -> dict[str, Any]:
        self._caller.require("accounts")
        action = "account_enable" if enabled else "account_disable"
        await self._run(action, name, self._store.set_enabled, name, enabled)
        return account_json(await asyncio.to_thread(self._store.get, name))

    async def reset(self, name: str) -> dict[str, Any]:
        self._caller.require("accounts")
        password = await self._run("account_reset", name, self._store.reset_password, name)
        return {"name": name, "password": password}

    async def change_own_password(self, old: str, new: str) -> None:
        name = self._caller.account.name
        ok = await asyncio.to_thread(self._store.authenticate, name, old)
        if ok is None:
            self._audit.record(name, "password_change", name, "denied")
            raise HTTPException(403, "the current password is wrong")
        await self._run("password_change", name, self._store.set_password, name, new)
