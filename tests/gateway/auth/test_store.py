"""Accounts: argon2id at rest, tokens hashed with expiry, disable/password change end sessions."""

from __future__ import annotations

import pytest
import sqlalchemy
from sqlalchemy import select

from gateway.auth.errors import AccountExistsError, InvalidAccountError, UnknownAccountError
from gateway.auth.schema import auth_tokens, users
from gateway.auth.store import AccountStore
from gateway.auth.throttle import LoginThrottle
from gateway.store.db import create_db_engine, migrate
from protocol.org import default_org


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> tuple[AccountStore, Clock, sqlalchemy.Engine]:
    engine = create_db_engine("sqlite://")
    migrate(engine)
    clock = Clock()
    return AccountStore(engine, default_org(), clock=clock), clock, engine


def test_passwords_are_argon2id_hashes_and_verify(store) -> None:  # type: ignore[no-untyped-def]
    accounts, _, engine = store
    account, password = accounts.add("wang", "grid:grid-01")
    assert len(password) >= 16 and str(account.role) == "grid:grid-01"
    with engine.connect() as conn:
        stored = conn.execute(select(users.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and password not in stored
    assert accounts.authenticate("wang", password) == account
    assert accounts.authenticate("wang", password + "x") is None
    assert accounts.authenticate("nobody", password) is None
    assert account.talker == "xixin-u-wang"


def test_names_roles_and_passwords_are_checked(store) -> None:  # type: ignore[no-untyped-def]
    accounts, _, _ = store
    accounts.add("li", "centre")
    with pytest.raises(AccountExistsError):
        accounts.add("li", "viewer")
    for name, role, password in [
        ("Li", "centre", None), ("a b", "centre", None), ("x" * 25, "centre", None),
        ("ok", "grid:grid-99", None), ("ok", "boss", None), ("ok", "centre", "short"),
    ]:  # fmt: skip
        with pytest.raises(InvalidAccountError):
            accounts.add(name, role, password)
    with pytest.raises(UnknownAccountError):
        accounts.set_enabled("ghost", False)


def test_tokens_expire_are_hashed_and_end_with_disable_and_password_change(store) -> None:  # type: ignore[no-untyped-def]
    accounts, clock, engine = store
    account, password = accounts.add("zhao", "area:area-renxi")
    token, expires = accounts.issue_token(account, "bearer", 60)
    assert expires == clock.now + 60
    with engine.connect() as conn:
        assert token not in {row.digest for row in conn.execute(select(auth_tokens))}
    assert accounts.account_for_token(token, "bearer") == account
    assert accounts.account_for_token(token, "session") is None  # kinds are not interchangeable
    clock.now += 61
    assert accounts.account_for_token(token, "bearer") is None  # expired
    token, _ = accounts.issue_token(account, "session", 60)
    accounts.set_enabled("zhao", False)
    assert accounts.account_for_token(token, "session") is None
    assert accounts.authenticate("zhao", password) is None  # disabled
    accounts.set_enabled("zhao", True)
    token, _ = accounts.issue_token(account, "session", 60)
    accounts.set_password("zhao", "a new long password")
    assert accounts.account_for_token(token, "session") is None
    assert accounts.authenticate("zhao", "a new long password") is not None
    new = accounts.reset_password("zhao")
    assert accounts.authenticate("zhao", new) is not None


def test_throttle_locks_after_failures_and_frees_later() -> None:
    throttle = LoginThrottle(max_failures=3, window_s=60, lockout_s=300)
    keys = ("user:a", "ip:1")
    for t in (0.0, 1.0):
        throttle.failed(keys, t)
        assert throttle.retry_after(keys, t) is None
    throttle.failed(keys, 2.0)
    assert throttle.retry_after(keys, 3.0) == pytest.approx(299.0)
    assert throttle.retry_after(("user:b", "ip:1"), 3.0) is not None  # the address too
    assert throttle.retry_after(keys, 302.0) is None
    # failures outside the window do not add up
    for t in (400.0, 500.0, 600.0):
        throttle.failed(("user:c",), t)
    assert throttle.retry_after(("user:c",), 600.0) is None
