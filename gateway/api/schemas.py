"""Pydantic schemas of the API, one per resource."""

from __future__ import annotations

import math
from typing import Any, Final, Literal, Self

from pydantic import BaseModel, Field, field_validator, model_validator

from protocol.control import ControlError, check_command, encode, is_utf8
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
    battery: int | None  # the newest of its status and beacons
    talkgroups: list[str]
    sos: bool
    online: bool  # connected and enabled (a disabled device is never online)
    stunned: bool  # stunned by a dispatcher (protocol §5.4) until revived


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
    {"v", "type", "id", "cmd", "device", "now", "wall_ms", "self", "msg_type", "issued_by"}
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
    """A command to a terminal: `{"command": "text", "text": "..."}` (its fields beside it), or
    `{"cmd": "text", "fields": {...}}`. Refused (422) unless the terminal could carry it out
    (protocol §5.4: no text without text, no unknown command, field or setting) and the whole
    `command` message is valid JSON within the terminals' size limit, so a refused command has
    no effect at all."""

    cmd: Literal["text", "assign", "stun", "revive", "config", "monitor", "status", "radio_check"]
    fields: dict[str, Any] = Field(
        default_factory=dict,
        description="the command's own fields (protocol §5.4), e.g. `text`; not "
        + ", ".join(sorted(RESERVED_COMMAND_KEYS)),
    )

    @model_validator(mode="before")
    @classmethod
    def _flat(cls, data: Any) -> Any:
        """The flat form: `command` and the command's fields side by side."""
        if isinstance(data, dict) and "command" in data and "cmd" not in data:
            fields = {k: v for k, v in data.items() if k != "command"}
            return {"cmd": data["command"], "fields": fields}
        return data

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
        if self.cmd != "monitor":  # a controlled power: checked against the caller (403)
            try:
                check_command(self.cmd, self.fields)
            except ControlError as exc:
                raise ValueError(exc.message) from exc
        size = len(encode("command", id=_ID_FOR_SIZE, cmd=self.cmd, **self.fields))
        if size > MAX_JSON_BYTES:
            raise ValueError(
                f"the command message would be about {size} bytes of JSON; terminals take at"
                f" most {MAX_JSON_BYTES}"
            )
        return self


class CommandOut(BaseModel):
    """A command and what became of it: `queued` (terminal offline; sent when it is back),
    `pending` (sent, awaiting the terminal's ack), `acknowledged`, `failed` (the terminal said
    no: `result.detail`) or `timed_out`. A radio check's `result`: `battery`, `signal`."""

    id: str
    device: str
    command: str
    args: dict[str, Any]
    state: Literal["pending", "queued", "acknowledged", "timed_out", "failed"]
    created_at: float
    created_by: str
    updated_at: float
    result: dict[str, Any] | None


class PositionOut(BaseModel):
    lat: float
    lon: float
    at: float


class AlarmOut(BaseModel):
    id: int
    kind: Literal["sos", "low_battery", "offline_too_long", "left_grid", "no_movement"]
    device: str
    device_name: str | None
    unit: str
    state: Literal["unattended", "acknowledged", "closed"]
    active: bool  # the condition still holds (an SOS not cancelled, the battery still low)
    raised_at: float
    acknowledged_by: str | None
    acknowledged_at: float | None
    closed_by: str | None
    closed_at: float | None
    outcome: Literal["valid", "false_alarm"] | None
    note: str | None
    position: PositionOut | None
    escalated_to: str | None
    escalations: int


class AlarmClose(BaseModel):
    outcome: Literal["valid", "false_alarm"]
    note: str = Field(min_length=1, max_length=2000)

    @field_validator("note")
    @classmethod
    def _not_blank(cls, note: str) -> str:
        if not note.strip():
            raise ValueError("a note is required")
        if not is_utf8(note):
            raise ValueError("the note has a lone surrogate, which is not valid UTF-8")
        return note.strip()


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
