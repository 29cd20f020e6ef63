"""Device secrets: generation and mosquitto-compatible password hashes.

The hash format is mosquitto 2.0's PBKDF2-SHA512 password-file entry, so the gateway can write a
broker password file straight from its database::

    $7$<iterations>$<base64 12-byte salt>$<base64 64-byte PBKDF2-HMAC-SHA512>

(standard base64 with padding). Pure functions; the only randomness is :mod:`secrets`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from typing import Final

from gateway.errors import CredentialError

SECRET_BYTES: Final = 24  # 192 bits, 32 URL-safe characters
SALT_BYTES: Final = 12  # what mosquitto_passwd uses
HASH_BYTES: Final = 64  # SHA-512 output
DEFAULT_ITERATIONS: Final = 1000
# mosquitto refuses iteration counts that do not fit its int parsing; keep a sane ceiling too.
MAX_ITERATIONS: Final = 10_000_000
MAX_SECRET_CHARS: Final = 256
_PREFIX: Final = "$7$"


def generate_secret() -> str:
    """A fresh random secret: 192 bits, URL-safe base64 without padding (32 characters)."""
    return secrets.token_urlsafe(SECRET_BYTES)


def _check_secret(secret: object) -> bytes:
    if not isinstance(secret, str) or not secret or len(secret) > MAX_SECRET_CHARS:
        raise CredentialError(
            f"a secret must be a non-empty string of at most {MAX_SECRET_CHARS} chars"
        )
    return secret.encode("utf-8")


def _derive(secret: bytes, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha512", secret, salt, iterations, HASH_BYTES)


def hash_secret(
    secret: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None
) -> str:
    """Hash `secret` into a mosquitto 2.0 ``$7$`` password-file entry (the part after ``user:``)."""
    password = _check_secret(secret)
    if isinstance(iterations, bool) or not isinstance(iterations, int):
        raise CredentialError(f"iterations must be an int, got {iterations!r}")
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise CredentialError(f"iterations must be 1..{MAX_ITERATIONS}, got {iterations}")
    if salt is None:
        salt = secrets.token_bytes(SALT_BYTES)
    elif len(salt) != SALT_BYTES:
        raise CredentialError(
            f"salt must be {SALT_BYTES} bytes (mosquitto's size), got {len(salt)}"
        )
    digest = _derive(password, salt, iterations)
    return (
        f"{_PREFIX}{iterations}${base64.b64encode(salt).decode('ascii')}$"
        f"{base64.b64encode(digest).decode('ascii')}"
    )


def parse_hash(hashed: str) -> tuple[int, bytes, bytes]:
    """Split a ``$7$`` entry into (iterations, salt, digest); CredentialError if malformed."""
    if not isinstance(hashed, str) or not hashed.startswith(_PREFIX):
        raise CredentialError("stored hash is not a mosquitto $7$ PBKDF2-SHA512 entry")
    parts = hashed[len(_PREFIX) :].split("$")
    if len(parts) != 3 or not parts[0].isdigit():
        raise CredentialError("stored hash must look like $7$<iterations>$<salt>$<hash>")
    iterations = int(parts[0])
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise CredentialError(f"stored hash has an out-of-range iteration count {iterations}")
    try:
        salt = base64.b64decode(parts[1], validate=True)
        digest = base64.b64decode(parts[2], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CredentialError("stored hash has invalid base64") from exc
    if not salt or len(digest) != HASH_BYTES:
        raise CredentialError("stored hash has an empty salt or a digest that is not 64 bytes")
    return iterations, salt, digest


def verify_secret(secret: str, hashed: str) -> bool:
    """True if `secret` matches the ``$7$`` entry `hashed` (constant-time comparison).

    A malformed `hashed` raises CredentialError: a corrupt store must not look like a wrong
    password. An unusable `secret` (empty, too long, not a str) is simply not a match.
    """
    iterations, salt, digest = parse_hash(hashed)
    try:
        password = _check_secret(secret)
    except CredentialError:
        return False
    return hmac.compare_digest(_derive(password, salt, iterations), digest)
