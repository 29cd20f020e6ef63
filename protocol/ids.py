"""Id patterns of protocol §2, checked with `fullmatch` only (`$` would accept "T002\n")."""

from __future__ import annotations

import re
from typing import Final

from protocol.errors import InvalidIdError

MAX_ID_CHARS: Final = 32
DEVICE_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")
# Talkgroup ids are unit ids (grid, area, `all`) or dynamic ones; the same pattern.
TALKGROUP_ID_RE: Final = re.compile(r"[a-z0-9-]{1,32}")
UNIT_ID_RE: Final = TALKGROUP_ID_RE
MAX_REQUEST_ID_CHARS: Final = 64
# Incident categories (the `category` of a `report`, §5.6) and incident ids (decimal, > 0).
CATEGORY_ID_RE: Final = re.compile(r"[a-z0-9-]{1,32}")
MAX_INCIDENT_ID: Final = 2**53 - 1


def is_category_id(value: object) -> bool:
    return isinstance(value, str) and CATEGORY_ID_RE.fullmatch(value) is not None


def is_device_id(value: object) -> bool:
    return isinstance(value, str) and DEVICE_ID_RE.fullmatch(value) is not None


def is_talkgroup_id(value: object) -> bool:
    return isinstance(value, str) and TALKGROUP_ID_RE.fullmatch(value) is not None


def check_device_id(value: object) -> str:
    """`value` if it is a device id (1-32 of A-Z a-z 0-9 _ -); else InvalidIdError."""
    if not isinstance(value, str) or DEVICE_ID_RE.fullmatch(value) is None:
        raise InvalidIdError(
            f"device id {value!r} must be 1-32 characters of A-Z, a-z, 0-9, '_' or '-'"
        )
    return value


def check_talkgroup_id(value: object) -> str:
    """`value` if it is a talkgroup id (1-32 of a-z 0-9 -); else InvalidIdError."""
    if not isinstance(value, str) or TALKGROUP_ID_RE.fullmatch(value) is None:
        raise InvalidIdError(f"{value!r} is not a talkgroup id (1-32 of a-z 0-9 -)")
    return value


#: An incident's own talkgroup (dynamic regrouping, protocol §5.6): ``inc-<number>``.
INCIDENT_TG_PREFIX: Final = "inc-"


def incident_talkgroup(incident: int) -> str:
    return f"{INCIDENT_TG_PREFIX}{incident}"


def incident_of_talkgroup(tg: str) -> int | None:
    """The incident whose own talkgroup `tg` is (``inc-<number>``); None for any other."""
    number = tg.removeprefix(INCIDENT_TG_PREFIX)
    if number == tg or not number.isdigit() or number.startswith("0"):
        return None
    value = int(number)
    return value if value <= MAX_INCIDENT_ID else None
