"""Account roles (pure): ``admin``, ``centre``, ``area:<area>``, ``grid:<grid>``, ``viewer``.

People sign in with accounts, not devices. An administrator provisions devices and manages
accounts; the three dispatcher tiers (centre, area, grid) see and command their part of the
organisation; a viewer only looks. What each may do where is :mod:`gateway.auth.scope`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from gateway.auth.errors import InvalidAccountError
from protocol.org import Organisation

RoleKind = Literal["admin", "centre", "area", "grid", "viewer"]
ROLE_KINDS: Final[tuple[RoleKind, ...]] = ("admin", "centre", "area", "grid", "viewer")
DISPATCHER_KINDS: Final[frozenset[RoleKind]] = frozenset({"centre", "area", "grid"})
_UNIT_KINDS: Final[frozenset[RoleKind]] = frozenset({"area", "grid"})

#: Account names: lower case, so an account's talker id (below) is a device id too.
ACCOUNT_NAME_RE: Final = re.compile(r"[a-z][a-z0-9_-]{0,23}")
#: A dispatcher account talks on the gateway as this id; "xixin-" is reserved for the system
#: (gateway.store.registry.RESERVED_ID_PREFIX), so no provisioned device can ever be it.
TALKER_PREFIX: Final = "xixin-u-"
ROLES_HELP: Final = "admin, centre, area:<area id>, grid:<grid id> or viewer"


@dataclass(frozen=True, slots=True)
class Role:
    kind: RoleKind
    unit: str | None = None  # the area or grid of an area/grid dispatcher

    def __str__(self) -> str:
        return self.kind if self.unit is None else f"{self.kind}:{self.unit}"

    @property
    def is_dispatcher(self) -> bool:
        return self.kind in DISPATCHER_KINDS


def parse_role(text: str, org: Organisation) -> Role:
    """The role written as `text`, checked against the organisation (InvalidAccountError)."""
    kind, sep, unit = text.strip().partition(":")
    if kind not in ROLE_KINDS:
        raise InvalidAccountError(f"unknown role {text!r}; expected {ROLES_HELP}")
    role_kind: RoleKind = kind
    if role_kind not in _UNIT_KINDS:
        if sep:
            raise InvalidAccountError(f"role {kind!r} takes no unit (got {text!r})")
        return Role(role_kind)
    known = org.areas if role_kind == "area" else org.grids
    if unit not in known:
        raise InvalidAccountError(
            f"role {text!r}: {unit!r} is not an {kind} of the organisation"
            if kind == "area"
            else f"role {text!r}: {unit!r} is not a grid of the organisation"
        )
    return Role(role_kind, unit)


def check_account_name(name: str) -> str:
    if not isinstance(name, str) or ACCOUNT_NAME_RE.fullmatch(name) is None:
        raise InvalidAccountError(
            f"account name {name!r} must be 1-24 characters of a-z, 0-9, '_' or '-', "
            "starting with a letter"
        )
    return name


def talker_id(name: str) -> str:
    """The gateway-side identity (a device id) of account `name` when it talks."""
    return TALKER_PREFIX + name
