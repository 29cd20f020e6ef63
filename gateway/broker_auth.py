"""Broker accounts for the managed mosquitto: the password file and the ACL (docs/protocol.md §8).

Both files are generated from the device registry and the organisation, written atomically
(temporary file + rename, mode 0600) so a broker reloading on SIGHUP never reads half a file. The
password file is written before the ACL: a new device then briefly has an account with no rights,
and a disabled device loses its account first.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

from gateway.credentials import generate_secret, hash_secret, parse_hash
from gateway.errors import ConfigError, CredentialError
from gateway.store.registry import Device, DeviceRegistry
from protocol import topics
from protocol.errors import ProtocolError
from protocol.ids import check_device_id
from protocol.org import Organisation

log = logging.getLogger(__name__)

GATEWAY_USER: Final = "xixin-gateway"
GATEWAY_SECRET_FILE: Final = "gateway.secret"
PASSWORD_FILE: Final = "broker.passwd"
ACL_FILE: Final = "broker.acl"
_FILE_MODE: Final = 0o600


def ensure_gateway_credentials(data_dir: Path) -> tuple[str, str]:
    """The gateway's broker account (user, password); the password is generated once.

    It lives in data_dir/gateway.secret (mode 0600) and is reused on every later call.
    """
    path = data_dir / GATEWAY_SECRET_FILE
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            # O_EXCL: two processes starting together must not each write a different password.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(generate_secret() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            log.info("generated the gateway's broker password in %s", path)
        if path.stat().st_mode & 0o077:
            log.warning("%s was readable by others; restricting it to mode 0600", path)
            path.chmod(_FILE_MODE)
        password = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read or create the gateway secret {path}: {exc}") from exc
    if not password or any(ch.isspace() for ch in password):
        raise ConfigError(
            f"{path} does not hold a usable password; delete it to generate a new one"
        )
    return GATEWAY_USER, password


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, _FILE_MODE)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def _check_user(user: str) -> None:
    if user == GATEWAY_USER:
        return
    try:
        check_device_id(user)
    except ProtocolError as exc:
        raise ConfigError(f"not a valid broker user name: {exc}") from exc


def write_password_file(path: Path, entries: Iterable[tuple[str, str]]) -> None:
    """Write ``user:$7$...`` lines (mode 0600). Users and hashes are checked first."""
    lines: list[str] = []
    seen: set[str] = set()
    for user, hashed in entries:
        _check_user(user)
        if user in seen:
            raise ConfigError(f"broker user {user!r} appears twice in the password entries")
        seen.add(user)
        try:
            parse_hash(hashed)
        except CredentialError as exc:
            raise ConfigError(f"broker user {user!r}: {exc}") from exc
        lines.append(f"{user}:{hashed}\n")
    _write_atomically(path, "".join(lines))


def device_acl_rules(device: Device, org: Organisation, extra: Iterable[str] = ()) -> list[str]:
    """The ``topic`` lines of one device's ACL section (protocol §8); `extra`: dynamic
    talkgroups the device is a member of now (incident talkgroups, §5.6)."""
    rules = topics.device_acl(
        device.id,
        org.member_talkgroups(device.unit, device.role) | frozenset(extra),
        dispatcher=device.role == "dispatcher",
    )
    return [f"topic {access} {pattern}" for access, pattern in rules]


def write_acl_file(
    path: Path,
    devices: Iterable[Device],
    org: Organisation,
    gateway_user: str = GATEWAY_USER,
    extra: Mapping[str, Iterable[str]] | None = None,
) -> None:
    """Write the mosquitto ACL: the gateway reads and writes everything, devices only their own.

    Disabled devices get no section (they have no password entry either). An unknown unit or
    role raises (see :func:`sync_broker_auth`, which leaves such devices out with a warning).
    """
    sections = [
        "# Generated by xixin from the device registry; rewritten whenever devices change.\n"
        "# Do not edit: see docs/protocol.md section 8.\n",
        f"user {gateway_user}\n"
        + "".join(f"topic {access} {pattern}\n" for access, pattern in topics.gateway_acl())
        # The broker's own counters (messages dropped, bytes queued): see broker_stats.py.
        + "topic read $SYS/#\n",
    ]
    for device in sorted(devices, key=lambda d: d.id):
        if not device.enabled:
            continue
        if device.id == gateway_user:
            raise ConfigError(f"device {device.id!r} would shadow the gateway's broker account")
        _check_user(device.id)
        try:
            rules = device_acl_rules(device, org, (extra or {}).get(device.id, ()))
        except ProtocolError as exc:
            raise ConfigError(f"device {device.id!r}: {exc}") from exc
        sections.append(f"user {device.id}\n" + "".join(f"{rule}\n" for rule in rules))
    _write_atomically(path, "\n".join(sections))


def sync_broker_auth(
    registry: DeviceRegistry,
    org: Organisation,
    data_dir: Path,
    extra: Mapping[str, Iterable[str]] | None = None,
) -> tuple[Path, Path]:
    """Regenerate data_dir/broker.passwd and data_dir/broker.acl; returns (password, acl) paths.

    Call after every device change, then reload the broker (SIGHUP) to apply them.
    """
    user, password = ensure_gateway_credentials(data_dir)
    units = org.units()
    usable: list[Device] = []
    for device in registry.list():
        if device.unit in units:
            usable.append(device)
        elif device.enabled:
            log.warning(
                "device %s belongs to unit %s, which the organisation no longer has; "
                "it gets no broker account until it is moved",
                device.id,
                device.unit,
            )
    allowed = {device.id for device in usable}
    entries = [(user, hash_secret(password))]
    entries.extend((dev, hashed) for dev, hashed in registry.password_entries() if dev in allowed)
    password_path = data_dir / PASSWORD_FILE
    acl_path = data_dir / ACL_FILE
    write_password_file(password_path, entries)
    write_acl_file(acl_path, usable, org, user, extra)
    log.info("broker auth written: %d device accounts", len(entries) - 1)
    return password_path, acl_path
