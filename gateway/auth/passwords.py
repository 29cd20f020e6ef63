"""Passwords of accounts: argon2id (memory-hard), generated ones, and the minimum accepted."""

from __future__ import annotations

import secrets
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.auth.errors import InvalidAccountError

MIN_PASSWORD_CHARS: Final = 12
MAX_PASSWORD_CHARS: Final = 256
#: argon2id with RFC 9106's second recommended option: t=3, m=64 MiB, p=4.
_HASHER: Final = PasswordHasher()
#: Verified against when the account does not exist, so a wrong name takes as long as a wrong
#: password (no account enumeration by timing).
_DUMMY_HASH: Final = _HASHER.hash("not a password of anyone")


def generate_password() -> str:
    """20 URL-safe characters: 120 random bits."""
    return secrets.token_urlsafe(15)


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidAccountError(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise InvalidAccountError(f"a password has at most {MAX_PASSWORD_CHARS} characters")
    if any(not ch.isprintable() for ch in password):
        raise InvalidAccountError("a password cannot contain control characters")
    return password


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether `password` matches the `stored` hash (None: no such account, still hashed)."""
    try:
        return _HASHER.verify(stored if stored is not None else _DUMMY_HASH, password) and (
            stored is not None
        )
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return _HASHER.check_needs_rehash(stored)
