"""Secrets and mosquitto-compatible password hashes, checked against mosquitto_passwd itself."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.credentials import generate_secret, hash_secret, parse_hash, verify_secret
from gateway.errors import CredentialError
from protocol.errors import InvalidIdError
from protocol.ids import DEVICE_ID_RE, check_device_id

HASH_RE = re.compile(r"^\$7\$(\d+)\$([A-Za-z0-9+/]{16})\$([A-Za-z0-9+/]{86}==)$")


def _mosquitto_passwd(tmp_path: Path, user: str, password: str) -> str:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd is not installed (apt-get install mosquitto)")
    path = tmp_path / "passwd"
    subprocess.run([tool, "-c", "-b", str(path), user, password], check=True, capture_output=True)
    line = path.read_text(encoding="utf-8").strip()
    name, hashed = line.split(":", 1)
    assert name == user
    return hashed


def test_generated_secrets_are_long_url_safe_and_unique() -> None:
    secrets = {generate_secret() for _ in range(200)}
    assert len(secrets) == 200
    for secret in secrets:
        assert re.fullmatch(r"[A-Za-z0-9_-]{32}", secret)
        padded = secret + "=" * (-len(secret) % 4)
        assert len(base64.urlsafe_b64decode(padded)) * 8 >= 128


@pytest.mark.parametrize("password", ["s3cret", generate_secret(), "pässwörd 口令"])
def test_hash_matches_mosquitto_passwd_exactly(tmp_path: Path, password: str) -> None:
    theirs = _mosquitto_passwd(tmp_path, "T001", password)
    iterations, salt, _digest = parse_hash(theirs)
    assert len(salt) == 12
    ours = hash_secret(password, iterations=iterations, salt=salt)
    assert ours == theirs
    assert verify_secret(password, theirs)
    assert not verify_secret(password + "x", theirs)


def test_hash_format_and_randomised_salt() -> None:
    first = hash_secret("correct horse")
    second = hash_secret("correct horse")
    assert first != second
    for hashed in (first, second):
        match = HASH_RE.fullmatch(hashed)
        assert match is not None, hashed
        assert match.group(1) == "1000"
        assert verify_secret("correct horse", hashed)
        assert not verify_secret("correct horse ", hashed)
    assert HASH_RE.fullmatch(hash_secret("x", iterations=101)) is not None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"iterations": 0}, "iterations must be"),
        ({"iterations": True}, "must be an int"),
        ({"salt": b"short"}, "salt must be 12 bytes"),
    ],
)
def test_hash_rejects_bad_parameters(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(CredentialError, match=message):
        hash_secret("x", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("secret", ["", "x" * 257])
def test_unusable_secrets(secret: str) -> None:
    with pytest.raises(CredentialError):
        hash_secret(secret)
    assert not verify_secret(secret, hash_secret("x"))


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plain",
        "$6$abc$def",
        "$7$101$salt",
        "$7$abc$g9Ypss+wQc7m6AzR$AAAA",
        "$7$101$!!!!$AAAA",
        "$7$101$g9Ypss+wQc7m6AzR$AAAA",
        "$7$0$g9Ypss+wQc7m6AzR$" + base64.b64encode(bytes(64)).decode(),
    ],
)
def test_malformed_stored_hash_is_an_error_not_a_mismatch(stored: str) -> None:
    with pytest.raises(CredentialError):
        verify_secret("anything", stored)


@pytest.mark.parametrize("device_id", ["T001", "a", "guard_07-b", "X" * 32])
def test_valid_device_ids(device_id: str) -> None:
    assert check_device_id(device_id) == device_id
    assert DEVICE_ID_RE.fullmatch(device_id)


@pytest.mark.parametrize("device_id", ["", "X" * 33, "T 001", "T/001", "T+", "T#", "设备", None, 7])
def test_invalid_device_ids(device_id: object) -> None:
    with pytest.raises(InvalidIdError, match="1-32 characters"):
        check_device_id(device_id)
