"""Provisioned devices: add, list, disable/enable, rotate secrets, verify them.

Secrets are generated here, returned exactly once to the caller and stored only as mosquitto
``$7$`` PBKDF2-SHA512 hashes (see gateway.credentials), so the broker's password file is written
straight from the table.
"""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from gateway.credentials import generate_secret, hash_secret, verify_secret
from gateway.errors import CredentialError
from gateway.store.errors import (
    DeviceExistsError,
    InvalidDeviceError,
    StoreError,
    UnknownDeviceError,
)
from gateway.store.schema import NAME_LEN, devices
from protocol.errors import InvalidIdError
from protocol.ids import check_device_id
from protocol.org import ROLES, Organisation

__all__ = [
    "ROLES",
    "Device",
    "DeviceExistsError",
    "DeviceRegistry",
    "InvalidDeviceError",
    "NewDevice",
    "StoreError",
    "UnknownDeviceError",
]

log = logging.getLogger(__name__)

# Broker accounts of the system itself (the gateway is "xixin-gateway") live under this prefix,
# so no device can ever shadow them in the password file.
RESERVED_ID_PREFIX: Final = "xixin-"


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    name: str
    unit: str
    role: str
    enabled: bool
    created_at: float  # Unix epoch seconds


@dataclass(frozen=True, slots=True)
class NewDevice:
    """A device to provision (bulk import)."""

    id: str
    unit: str
    role: str
    name: str | None = None


_CHUNK = 500  # ids per IN (...) query: well under SQLite's bound-parameter limit

_COLUMNS = (
    devices.c.id,
    devices.c.name,
    devices.c.unit,
    devices.c.role,
    devices.c.enabled,
    devices.c.created_at,
)


def _device_row(new: NewDevice, display: str, secret: str, now: float) -> dict[str, Any]:
    """The devices-table row of a device being provisioned (only the secret's hash is kept)."""
    return {
        "id": new.id,
        "name": display,
        "unit": new.unit,
        "role": new.role,
        "secret_hash": hash_secret(secret),
        "enabled": True,
        "created_at": now,
        "updated_at": now,
    }


def _device(row: sqlalchemy.Row[*tuple[Any, ...]]) -> Device:
    return Device(row.id, row.name, row.unit, row.role, bool(row.enabled), float(row.created_at))


class DeviceRegistry:
    """The devices table, checked against the organisation (units) and the role list."""

    def __init__(
        self,
        engine: sqlalchemy.Engine,
        org: Organisation,
        *,
        clock: Callable[[], float] = time.time,
        logger: logging.Logger | None = None,
    ) -> None:
        self.engine = engine
        self.org = org
        self.clock = clock
        self.log = logger or log

    # ---- validation ------------------------------------------------------------------------

    def check_new(self, device_id: str, unit: str, role: str, name: str | None) -> str:
        """Raise InvalidDeviceError unless the fields make a valid device; returns its name."""
        try:
            check_device_id(device_id)
        except InvalidIdError as exc:
            raise InvalidDeviceError(str(exc)) from exc
        if device_id.lower().startswith(RESERVED_ID_PREFIX):
            raise InvalidDeviceError(
                f"device id {device_id!r}: ids starting with {RESERVED_ID_PREFIX!r} are reserved "
                "for the system's own broker accounts"
            )
        if unit not in self.org.units():
            raise InvalidDeviceError(
                f"unknown unit {unit!r}; expected 'centre', an area ({', '.join(self.org.areas)}) "
                f"or a grid ({', '.join(self.org.grids)})"
            )
        if role not in ROLES:
            raise InvalidDeviceError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
        display = device_id if name is None else name.strip()
        if not display or len(display) > NAME_LEN or not display.isprintable():
            raise InvalidDeviceError(
                f"device name must be 1-{NAME_LEN} printable characters, got {name!r}"
            )
        return display

    # ---- commands --------------------------------------------------------------------------

    def add(
        self, device_id: str, unit: str, role: str, name: str | None = None
    ) -> tuple[Device, str]:
        """Provision a device; returns it and its secret (not stored, never shown again)."""
        display = self.check_new(device_id, unit, role, name)
        secret = generate_secret()
        now = self.clock()
        row = _device_row(NewDevice(device_id, unit, role), display, secret, now)
        try:
            with self.engine.begin() as conn:
                clash = self._existing(conn, [device_id.lower()]).get(device_id.lower())
                if clash is not None:
                    detail = (
                        "" if clash == device_id else f" (as {clash!r}; ids differ only in case)"
                    )
                    raise DeviceExistsError(f"device {device_id!r} already exists{detail}")
                conn.execute(insert(devices).values(**row))
        except IntegrityError as exc:  # a concurrent add of the same id won the race
            raise DeviceExistsError(f"device {device_id!r} already exists") from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"adding device {device_id!r} failed: {exc}") from exc
        self.log.info("device %s added: unit %s, role %s", device_id, unit, role)
        return Device(device_id, display, unit, role, True, now), secret

    def add_many(self, new: Sequence[NewDevice]) -> builtins.list[tuple[Device, str]]:
        """Provision all of `new` in one transaction, or none of them (the first invalid or
        existing id raises); returns each device with its secret, in order."""
        displays = [self.check_new(d.id, d.unit, d.role, d.name) for d in new]
        lowered = [d.id.lower() for d in new]
        if len(set(lowered)) != len(lowered):
            raise InvalidDeviceError("device ids repeat (ids are compared ignoring case)")
        secrets = [generate_secret() for _ in new]
        now = self.clock()
        rows = [
            _device_row(d, display, secret, now)
            for d, display, secret in zip(new, displays, secrets, strict=True)
        ]
        try:
            with self.engine.begin() as conn:
                clashes = self._existing(conn, lowered)
                if clashes:
                    raise DeviceExistsError(
                        f"devices already exist: {', '.join(sorted(clashes.values()))}"
                    )
                if rows:
                    conn.execute(insert(devices), rows)
        except IntegrityError as exc:  # a concurrent add of one of the ids won the race
            raise DeviceExistsError(f"a device being imported already exists: {exc}") from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"importing {len(new)} devices failed: {exc}") from exc
        self.log.info("%d devices added in one import", len(new))
        return [
            (Device(d.id, display, d.unit, d.role, True, now), secret)
            for d, display, secret in zip(new, displays, secrets, strict=True)
        ]

    def existing_ids(self, device_ids: Iterable[str]) -> dict[str, str]:
        """Lower-cased id -> the stored id, for those of `device_ids` already provisioned
        (compared ignoring case, as add does)."""
        try:
            with self.engine.connect() as conn:
                return self._existing(conn, [i.lower() for i in device_ids])
        except SQLAlchemyError as exc:
            raise StoreError(f"reading devices failed: {exc}") from exc

    @staticmethod
    def _existing(conn: sqlalchemy.Connection, lowered: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(lowered), _CHUNK):
            chunk = lowered[start : start + _CHUNK]
            query = select(devices.c.id).where(func.lower(devices.c.id).in_(chunk))
            found.update((stored.lower(), stored) for stored in conn.execute(query).scalars())
        return found

    def disable(self, device_id: str) -> None:
        """Refuse the device at the broker from the next password-file sync on (idempotent)."""
        self._update(device_id, enabled=False)
        self.log.info("device %s disabled", device_id)

    def enable(self, device_id: str) -> None:
        self._update(device_id, enabled=True)
        self.log.info("device %s enabled", device_id)

    def rotate(self, device_id: str) -> str:
        """Replace the device's secret; returns the new one (the old one stops working)."""
        secret = generate_secret()
        self._update(device_id, secret_hash=hash_secret(secret))
        self.log.info("device %s secret rotated", device_id)
        return secret

    def _update(self, device_id: str, **values: object) -> None:
        try:
            with self.engine.begin() as conn:
                result = conn.execute(
                    update(devices)
                    .where(devices.c.id == device_id)
                    .values(updated_at=self.clock(), **values)
                )
        except SQLAlchemyError as exc:
            raise StoreError(f"updating device {device_id!r} failed: {exc}") from exc
        if result.rowcount == 0:
            raise UnknownDeviceError(f"no device {device_id!r}")

    # ---- queries ---------------------------------------------------------------------------

    def get(self, device_id: str) -> Device:
        row = self._fetch_one(select(*_COLUMNS).where(devices.c.id == device_id))
        if row is None:
            raise UnknownDeviceError(f"no device {device_id!r}")
        return _device(row)

    def list(self) -> builtins.list[Device]:
        """All devices, enabled or not, ordered by id."""
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(select(*_COLUMNS).order_by(devices.c.id)).all()
        except SQLAlchemyError as exc:
            raise StoreError(f"listing devices failed: {exc}") from exc
        return [_device(row) for row in rows]

    def verify(self, device_id: str, secret: str) -> bool:
        """True only for an enabled device presenting its current secret."""
        row = self._fetch_one(
            select(devices.c.secret_hash, devices.c.enabled).where(devices.c.id == device_id)
        )
        if row is None or not row.enabled:
            return False
        try:
            return verify_secret(secret, row.secret_hash)
        except CredentialError as exc:
            raise StoreError(f"device {device_id!r} has a corrupt stored secret: {exc}") from exc

    def password_entries(self) -> builtins.list[tuple[str, str]]:
        """(device id, $7$ hash) of every enabled device, ordered by id: the broker's accounts."""
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(devices.c.id, devices.c.secret_hash)
                    .where(devices.c.enabled.is_(True))
                    .order_by(devices.c.id)
                ).all()
        except SQLAlchemyError as exc:
            raise StoreError(f"reading device secrets failed: {exc}") from exc
        return [(row.id, row.secret_hash) for row in rows]

    def _fetch_one(
        self, query: sqlalchemy.Select[*tuple[Any, ...]]
    ) -> sqlalchemy.Row[*tuple[Any, ...]] | None:
        try:
            with self.engine.connect() as conn:
                return conn.execute(query).one_or_none()
        except SQLAlchemyError as exc:
            raise StoreError(f"reading devices failed: {exc}") from exc
