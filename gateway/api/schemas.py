"""Pydantic schemas of the API, one per resource."""

from __future__ import annotations

import math
from typing import Any, Final, Literal, Self

from pydantic import BaseModel, Field, field_validator, model_validator

from protocol.control import encode, is_utf8
from protocol.ids import DEVICE_ID_RE
from protocol.limits import MAX_JSON_BYTES

#: Largest value of an `Integer` column on every supported database (PostgreSQL's is 32-bit;
#: SQLite's 64-bit): ids and counts beyond it cannot be stored, so they are refused as input.
DB_INT_MAX: Final = 2**31 - 1


class Health(BaseModel):
    status: Literal["ok", "degraded"]  # ok: connected and no problems
    broker: str
    mqtt_connected: bool
    devices: int
    devices_online: int
    problems: list[str] = []  # why it is degraded, one line each
    broker_restarts: int = 0  # the managed broker restarted by the supervisor


class DeviceOut(BaseModel):
    id: str
    name: str
    unit: str
    role: str
    enabled: bool
    presence: str
    presence_since_ms: int | None
    battery: int | None
    talkgroups: list[str]
    sos: bool


class DeviceCreate(BaseModel):
    id: str = Field(pattern=f"^{DEVICE_ID_RE.pattern}$")  # the whole string (Rust regex `$`)
    unit: str
    role: Literal["officer", "guard", "dispatcher"]
    name: str | None = None


class DeviceSecret(BaseModel):
    device: DeviceOut
    secret: str = Field(description="shown once; only a hash is stored")


class TalkgroupOut(BaseModel):
    id: str
    name: str
    members: int
    affiliated: int
    floor: str
    talker: str | None


class QueueEntry(BaseModel):
    device: str
    priority: str


class FloorOut(BaseModel):
    key: str
    state: str
    holder: str | None
    burst: int
    priority: str | None
    queue: list[QueueEntry]


#: Keys `fields` may not use: the `command` message's own keys (`v`, `type`, `id`, `cmd`), which a
#: field would override or clash with, and the parameter names of the calls that pass `fields` on
#: as keywords (GatewayRunner/ControlPlane.send_command, ControlPlane._reply, messages.encode).
RESERVED_COMMAND_KEYS: Final = frozenset(
    {"v", "type", "id", "cmd", "device", "now", "wall_ms", "self", "msg_type"}
)
#: How deeply `fields` values may nest (a `config` command's `settings` is one level).
MAX_FIELDS_DEPTH: Final = 16
#: The command id used when estimating the message's size: longer than any the gateway makes.
_ID_FOR_SIZE: Final = "c" + "9" * 24


def _json_problem(fields: dict[str, Any]) -> str | None:
    """Why `fields` cannot be sent as JSON to a terminal: NaN/Infinity (not JSON), strings with
    lone surrogates (not UTF-8), other types, nesting too deep; None when they can."""
    stack: list[tuple[str, Any, int]] = [("fields", fields, 0)]
    while stack:
        where, value, depth = stack.pop()
        if isinstance(value, str):
            if not is_utf8(value):
                return f"{where} has a lone surrogate, which is not valid UTF-8"
        elif isinstance(value, float):
            if not math.isfinite(value):
                return f"{where} is {value!r}: NaN and Infinity are not valid JSON"
        elif value is None or isinstance(value, bool | int):
            pass
        elif isinstance(value, dict | list):
            if depth >= MAX_FIELDS_DEPTH:
                return f"{where} nests deeper than {MAX_FIELDS_DEPTH} levels"
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    if not is_utf8(key):
                        return f"a key in {where} has a lone surrogate, which is not valid UTF-8"
                elif isinstance(value, dict):
                    return f"{where} has a key that is not a string"
                stack.append((f"{where}[{key!a}]", item, depth + 1))
        else:
            return f"{where} is a {type(value).__name__}, not a JSON value"
    return None


class CommandIn(BaseModel):
    """A command to a terminal; refused (422) unless the whole `command` message is valid JSON
    within the terminals' size limit, so a refused command has no effect at all."""

    cmd: Literal["text", "assign", "stun", "revive", "config", "monitor"]
    fields: dict[str, Any] = Field(
        default_factory=dict,
        description="the command's own fields (protocol §5.4), e.g. `text`; not "
        + ", ".join(sorted(RESERVED_COMMAND_KEYS)),
    )

    @field_validator("fields")
    @classmethod
    def _sendable(cls, fields: dict[str, Any]) -> dict[str, Any]:
        reserved = sorted(RESERVED_COMMAND_KEYS.intersection(fields))
        if reserved:
            raise ValueError(
                f"fields {', '.join(map(repr, reserved))} are reserved: the command message sets"
                f" {', '.join(sorted(RESERVED_COMMAND_KEYS))} itself"
            )
        problem = _json_problem(fields)
        if problem is not None:
            raise ValueError(problem)
        return fields

    @model_validator(mode="after")
    def _fits(self) -> Self:
        size = len(encode("command", id=_ID_FOR_SIZE, cmd=self.cmd, **self.fields))
        if size > MAX_JSON_BYTES:
            raise ValueError(
                f"the command message would be about {size} bytes of JSON; terminals take at"
                f" most {MAX_JSON_BYTES}"
            )
        return self


class CommandOut(BaseModel):
    id: str
    device: str
    cmd: str


class RecordingOut(BaseModel):
    id: int
    floor_key: str
    talker: str
    burst: int
    started_at: float
    ended_at: float
    duration_ms: int
    frames: int
    lost_frames: int
