"""The accounts store: users with argon2id password hashes, their sessions and bearer tokens.

Blocking (SQLAlchemy); the API calls it on worker threads. Tokens are 256-bit random values
handed out once and kept only as SHA-256 digests with an expiry; disabling an account or
changing its password ends all of its sessions and tokens.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

import sqlalchemy
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from gateway.auth.errors import AccountExistsError, InvalidAccountError, UnknownAccountError
from gateway.auth.passwords import (
    check_password,
    generate_password,
    hash_password,
    needs_rehash,
    verify_password,
)
from gateway.auth.roles import Role, check_account_name, parse_role, talker_id
from gateway.auth.schema import auth_tokens, users
from protocol.org import Organisation

TokenKind = Literal["session", "bearer"]
SESSION_TTL_S: Final = 12 * 3600.0  # one shift
BEARER_TTL_S: Final = 3600.0
MAX_BEARER_TTL_S: Final = 30 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    name: str
    role: Role
    enabled: bool
    created_at: float

    @property
    def talker(self) -> str:
        """The gateway-side identity of this account when it talks (dispatcher priority)."""
        return talker_id(self.name)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class AccountStore:
    def __init__(
        self,
        engine: sqlalchemy.Engine,
        org: Organisation,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.org = org
        self.clock = clock

    def _account(self, row: Any) -> Account:
        # A role naming a unit the org no longer has is shown, but grants nothing: viewer.
        try:
            role = parse_role(row.role, self.org)
        except InvalidAccountError:
            role = Role("viewer")
        return Account(row.id, row.name, role, bool(row.enabled), float(row.created_at))

    # ---- accounts ------------------------------------------------------------------------

    def add(self, name: str, role: str, password: str | None = None) -> tuple[Account, str]:
        """Create an account; returns it and its password (generated when none is given)."""
        check_account_name(name)
        parsed = parse_role(role, self.org)
        password = check_password(password) if password is not None else generate_password()
        now = self.clock()
        try:
            with self.engine.begin() as conn:
                new_id = conn.execute(
                    insert(users).values(
                        name=name,
                        role=str(parsed),
                        password_hash=hash_password(password),
                        enabled=True,
                        created_at=now,
                        updated_at=now,
                    )
                ).inserted_primary_key
        except IntegrityError as exc:
            raise AccountExistsError(f"account {name!r} already exists") from exc
        assert new_id is not None
        return Account(int(new_id[0]), name, parsed, True, now), password  # fmt: skip

    def list(self) -> list[Account]:
        with self.engine.connect() as conn:
            return [self._account(r) for r in conn.execute(select(users).order_by(users.c.name))]

    def get(self, name: str) -> Account:
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.name == name)).first()
        if row is None:
            raise UnknownAccountError(f"no account {name!r}")
        return self._account(row)

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(users)).scalar_one())

    def _update(self, name: str, end_tokens: bool, **values: Any) -> None:
        with self.engine.begin() as conn:
            user_id = conn.execute(
                select(users.c.id).where(users.c.name == name)
            ).scalar_one_or_none()
            if user_id is None:
                raise UnknownAccountError(f"no account {name!r}")
            conn.execute(
                update(users).where(users.c.id == user_id).values(updated_at=self.clock(), **values)
            )
            if end_tokens:
                conn.execute(delete(auth_tokens).where(auth_tokens.c.user_id == user_id))

    def set_enabled(self, name: str, enabled: bool) -> None:
        self._update(name, not enabled, enabled=enabled)

    def set_role(self, name: str, role: str) -> None:
        self._update(name, True, role=str(parse_role(role, self.org)))

    def set_password(self, name: str, password: str) -> None:
        self._update(name, True, password_hash=hash_password(check_password(password)))

    def reset_password(self, name: str) -> str:
        password = generate_password()
        self._update(name, True, password_hash=hash_password(password))
        return password

    def authenticate(self, name: str, password: str) -> Account | None:
        """The enabled account `name` if `password` is its password; else None (as slow)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.name == name)).first()
        if not verify_password(row.password_hash if row is not None else None, password):
            return None
        assert row is not None
        if needs_rehash(row.password_hash):
            with self.engine.begin() as conn:
                conn.execute(
                    update(users)
                    .where(users.c.id == row.id)
                    .values(password_hash=hash_password(password))
                )
        account = self._account(row)
        return account if account.enabled else None

    # ---- sessions and bearer tokens --------------------------------------------------------

    def issue_token(self, account: Account, kind: TokenKind, ttl_s: float) -> tuple[str, float]:
        """A new token of `account` and when it expires; only its digest is stored."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        expires = now + ttl_s
        with self.engine.begin() as conn:
            conn.execute(delete(auth_tokens).where(auth_tokens.c.expires_at <= now))
            conn.execute(
                insert(auth_tokens).values(
                    digest=token_digest(token), user_id=account.id, kind=kind,
                    created_at=now, expires_at=expires,
                )
            )  # fmt: skip
        return token, expires

    def account_for_token(self, token: str, kind: TokenKind) -> Account | None:
        """The enabled account a live token of `kind` belongs to, or None."""
        query = (
            select(users, auth_tokens.c.expires_at)
            .join(auth_tokens, auth_tokens.c.user_id == users.c.id)
            .where(auth_tokens.c.digest == token_digest(token), auth_tokens.c.kind == kind)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None or row.expires_at <= self.clock() or not row.enabled:
            return None
        return self._account(row)

    def revoke_token(self, token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(auth_tokens).where(auth_tokens.c.digest == token_digest(token)))
