"""Control messages of docs/protocol.md §5: their types and codes, strict parsing of uplink
requests into typed values, and encoding."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from protocol.errors import ProtocolError
from protocol.ids import (
    MAX_ID_CHARS,
    MAX_INCIDENT_ID,
    MAX_REQUEST_ID_CHARS,
    is_category_id,
    is_device_id,
    is_talkgroup_id,
)
from protocol.limits import (
    MAX_AFFILIATE_TGS,
    MAX_FIELD_CHARS,
    MAX_JSON_BYTES,
    MAX_REASON_CHARS,
    MAX_REPORT_TEXT_CHARS,
    MAX_STATUS_CODE_CHARS,
    MAX_STATUS_TEXT_CHARS,
)

SCHEMA_VERSION: Final = 1
# Uplink requests that get a reply (§5.1); `ack` and `rr` are never answered.
REQUEST_TYPES: Final = frozenset(
    {"floor_request", "floor_release", "affiliate", "sos", "status_msg", "report"}
)
UNANSWERED_TYPES: Final = frozenset({"ack", "rr"})
# The first reply to a request (§5.2).
REPLY_TYPES: Final = frozenset(
    {
        "floor_granted",
        "floor_queued",
        "floor_deny",
        "floor_released",
        "affiliated",
        "sos_ack",
        "status_ack",
        "report_ack",
        "error",
    }
)
# Dispatcher commands (§5.4).
COMMANDS: Final = frozenset(
    {"text", "assign", "stun", "revive", "config", "monitor", "status", "radio_check", "regroup"}
)
#: The `config` settings a terminal knows (§5.4): name -> (lowest, highest) value.
CONFIG_SETTINGS: Final = {"beacon_interval_s": (1, 3600)}
#: Each command's fields (§5.4): name -> required. `monitor`'s are the gateway's own (by).
COMMAND_FIELDS: Final = {
    "text": {"text": True},
    "assign": {
        "incident": False,
        "grid": False,
        "text": False,
        "category": False,
        "category_name": False,
        "lat": False,
        "lon": False,
        "tg": False,
    },
    "stun": {},
    "revive": {},
    "config": {"settings": True},
    "monitor": {"seconds": True, "by": False, "reason": True},
    "status": {"code": True, "text": False},
    "radio_check": {},
    "regroup": {"tg": True, "incident": True, "active": True},
}
# Error codes of `error` replies and refused messages (§5.2; `bad_rr` is never answered).
ERROR_CODES: Final = frozenset(
    {
        "bad_json",
        "bad_version",
        "unknown_type",
        "bad_field",
        "too_large",
        "bad_rr",
        "unknown_device",
        "disabled",
        "rate_limited",
    }
)


class ControlError(ProtocolError):
    """A control request the gateway refuses; carries the protocol error code."""

    def __init__(
        self, code: str, message: str, re_id: str | None = None, *, reply: bool = True
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.re_id = re_id
        self.reply = reply  # False for messages the protocol never answers (rr)


@dataclass(frozen=True, slots=True)
class FloorRequest:
    id: str
    tg: str | None
    call: str | None
    emergency: bool


@dataclass(frozen=True, slots=True)
class FloorRelease:
    id: str
    tg: str | None
    call: str | None


@dataclass(frozen=True, slots=True)
class Affiliate:
    id: str
    tgs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Sos:
    id: str
    active: bool
    lat: float | None = None  # the terminal's own fix, when it has one (§5.1)
    lon: float | None = None


@dataclass(frozen=True, slots=True)
class StatusMessage:
    id: str
    code: str
    text: str | None
    incident: int | None = None  # the incident the status is about (§5.6)


@dataclass(frozen=True, slots=True)
class IncidentReport:
    """§5.6: an officer reports an incident from its terminal."""

    id: str
    category: str
    text: str
    lat: float | None
    lon: float | None
    voice: bool  # the terminal's next talk burst is the report's voice note


@dataclass(frozen=True, slots=True)
class CommandAck:
    re: str
    ok: bool
    detail: str | None
    battery: int | None = None  # a `radio_check`'s answer (§5.4)
    signal: int | None = None

    def result(self) -> dict[str, Any] | None:
        """What the ack reports besides ok/detail (a radio check's battery and signal)."""
        if self.battery is None and self.signal is None:
            return None
        return {"battery": self.battery, "signal": self.signal}


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """§9.1: what a listener measured on a burst; forwarded to the talker, never answered."""

    tg: str | None
    call: str | None
    burst: int
    loss_pct: float
    jitter_ms: float
    late_pct: float
    extra: dict[str, int]  # expected, received, interval_ms when given

    @property
    def miss_score(self) -> float:
        return self.loss_pct + self.late_pct

    def forward_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "tg": self.tg,
            "call": self.call,
            "burst": self.burst,
            "loss_pct": self.loss_pct,
            "jitter_ms": self.jitter_ms,
            "late_pct": self.late_pct or None,
        }
        fields.update(self.extra)
        return fields


def rr_body(
    *,
    burst: int,
    loss_pct: float,
    jitter_ms: float,
    tg: str | None = None,
    call: str | None = None,
    expected: int | None = None,
    received: int | None = None,
    interval_ms: int | None = None,
    late_pct: float | None = None,
    sender: str | None = None,
) -> dict[str, Any]:
    """The JSON object of an `rr` (§9.1): a listener's on ctrl/up, or — with `sender` (`from`)
    — the one the gateway forwards to the talker. Percentages and jitter to 0.1."""
    if (tg is None) == (call is None):
        raise ControlError("bad_field", "a report names exactly one of 'tg' or 'call'")
    body: dict[str, Any] = {"v": SCHEMA_VERSION, "type": "rr"}
    if tg is not None:
        body["tg"] = tg
    else:
        body["call"] = call
    body["burst"] = burst
    body["loss_pct"] = round(loss_pct, 1)
    body["jitter_ms"] = round(jitter_ms, 1)
    counts = (("expected", expected), ("received", received), ("interval_ms", interval_ms))
    for name, value in counts:
        if value is not None:
            body[name] = value
    if late_pct is not None:
        body["late_pct"] = round(late_pct, 1)
    if sender is not None:
        body["from"] = sender
    return body


def _number(
    body: dict[str, Any],
    name: str,
    low: float,
    high: float,
    *,
    required: bool = True,
    integer: bool = False,
) -> float | None:
    value = body.get(name)
    if value is None and not required:
        return None
    kinds = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        what = "an integer" if integer else "a number"
        raise ControlError("bad_field", f"'{name}' must be {what} in {low}..{high}")
    return float(value)


def parse_rr(body: dict[str, Any]) -> ReceiverReport:
    """The fields of an `rr` object (§9.1); ControlError if one is missing or out of range.
    Also reads the report the gateway forwards to a talker (its `from` is left to the caller)."""
    tg, call = _target(body, "")
    burst = _number(body, "burst", 1, 0xFFFF, integer=True)
    loss = _number(body, "loss_pct", 0, 100)
    jitter = _number(body, "jitter_ms", 0, 60_000)
    late = _number(body, "late_pct", 0, 100, required=False)
    assert burst is not None and loss is not None and jitter is not None
    extra: dict[str, int] = {}
    for name in ("expected", "received", "interval_ms"):
        value = _number(body, name, 0, 1_000_000, required=False, integer=True)
        if value is not None:
            extra[name] = int(value)
    return ReceiverReport(tg, call, int(burst), loss, jitter, late or 0.0, extra)


def _parse_sos(body: dict[str, Any], re_id: str) -> Sos:
    active = _field(body, "active", bool, re_id)
    try:
        lat = _number(body, "lat", -90, 90, required=False)
        lon = _number(body, "lon", -180, 180, required=False)
    except ControlError as exc:
        raise ControlError("bad_field", exc.message, re_id) from exc
    if (lat is None) != (lon is None):
        raise ControlError("bad_field", "'lat' and 'lon' go together", re_id)
    return Sos(re_id, active, lat, lon)


def check_command(cmd: str, fields: dict[str, Any]) -> None:
    """Refuse (ControlError `bad_field`) a dispatcher command the terminal could not carry out
    (§5.4): an unknown command, a missing, unknown or empty field, a text without text, a
    `config` with settings a terminal does not know or out of range."""
    spec = COMMAND_FIELDS.get(cmd)
    if spec is None:
        raise ControlError("bad_field", f"unknown command {cmd!r}; known: {sorted(COMMANDS)}")
    unknown = sorted(set(fields) - set(spec))
    if unknown:
        raise ControlError("bad_field", f"{cmd!r} takes no field {', '.join(unknown)}")
    for name, required in spec.items():
        value = fields.get(name)
        if value is None:
            if required:
                raise ControlError("bad_field", f"{cmd!r} needs '{name}'")
            continue
        if name == "incident" and (type(value) is not int or not 1 <= value <= MAX_INCIDENT_ID):
            raise ControlError("bad_field", "'incident' must be an incident number")
        if name in ("text", "code", "grid", "reason", "category", "category_name", "tg") and (
            not isinstance(value, str) or not value.strip()
        ):
            raise ControlError("bad_field", f"'{name}' must be a non-empty string")
    if cmd == "assign" and not fields:
        raise ControlError("bad_field", "'assign' needs 'incident', 'grid' or 'text'")
    if cmd == "status" and len(fields["code"]) > MAX_STATUS_CODE_CHARS:
        raise ControlError("bad_field", f"'code' is at most {MAX_STATUS_CODE_CHARS} characters")
    if cmd == "config":
        _check_settings(fields["settings"])


def _check_settings(settings: object) -> None:
    if not isinstance(settings, dict) or not settings:
        raise ControlError("bad_field", "'settings' must be a non-empty object")
    unknown = sorted(k for k in settings if k not in CONFIG_SETTINGS)
    if unknown:
        raise ControlError(
            "bad_field", f"unknown settings {unknown}; known: {sorted(CONFIG_SETTINGS)}"
        )
    for name, (low, high) in CONFIG_SETTINGS.items():
        _number(settings, name, low, high, required=False)


Request = (
    FloorRequest
    | FloorRelease
    | Affiliate
    | Sos
    | StatusMessage
    | IncidentReport
    | CommandAck
    | ReceiverReport
)


# allow_nan=False: NaN is not JSON, a terminal's parser would refuse the whole message.
# One encoder for every message: json.dumps with these options would build a new one each call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode(msg_type: str, **fields: Any) -> bytes:
    """A control message as compact UTF-8 JSON; None-valued fields are left out."""
    body: dict[str, Any] = {"v": SCHEMA_VERSION, "type": msg_type}
    body.update((k, v) for k, v in fields.items() if v is not None)
    return _ENCODER.encode(body).encode()


def _field(
    body: dict[str, Any],
    name: str,
    kind: type,
    re_id: str | None,
    *,
    required: bool = True,
    max_len: int = MAX_FIELD_CHARS,
) -> Any:
    value = body.get(name)
    if value is None:
        if required:
            raise ControlError("bad_field", f"'{name}' is required", re_id)
        return None
    if kind is bool and not isinstance(value, bool):
        raise ControlError("bad_field", f"'{name}' must be true or false", re_id)
    if kind is str and (not isinstance(value, str) or len(value) > max_len):
        raise ControlError("bad_field", f"'{name}' must be a string of at most {max_len}", re_id)
    return value


def _target(body: dict[str, Any], re_id: str) -> tuple[str | None, str | None]:
    tg = _field(body, "tg", str, re_id, required=False, max_len=MAX_ID_CHARS)
    call = _field(body, "call", str, re_id, required=False, max_len=MAX_ID_CHARS)
    if (tg is None) == (call is None):
        raise ControlError("bad_field", "exactly one of 'tg' or 'call' is required", re_id)
    if tg is not None and not is_talkgroup_id(tg):
        raise ControlError("bad_field", f"'tg' {tg!r} is not a talkgroup id", re_id)
    if call is not None and not is_device_id(call):
        raise ControlError("bad_field", f"'call' {call!r} is not a device id", re_id)
    return tg, call


def is_utf8(text: str) -> bool:
    """False for a string holding a lone surrogate (from a JSON "\\ud800" escape): it cannot
    be encoded again, in a reply, a stored row or an event."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def load_object(payload: bytes) -> dict[str, Any]:
    """A JSON object from a terminal: UTF-8 (not UTF-16/32, which json.loads would guess), at
    most MAX_JSON_BYTES, no nesting deep enough to exhaust the stack, and no lone surrogate
    escape (it could not be encoded again, in a reply or a stored event)."""
    if len(payload) > MAX_JSON_BYTES:
        raise ControlError("too_large", f"{len(payload)} bytes, limit {MAX_JSON_BYTES}")
    try:
        body = json.loads(payload.decode("utf-8"))
        if isinstance(body, dict):
            json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (UnicodeError, json.JSONDecodeError) as exc:
        raise ControlError("bad_json", f"not UTF-8 JSON: {exc}") from exc
    except RecursionError as exc:
        raise ControlError("bad_json", "JSON nested too deeply") from exc
    if not isinstance(body, dict):
        raise ControlError("bad_json", "the message must be a JSON object")
    return body


def parse_request(payload: bytes) -> Request:
    """Parse one uplink control message; raise ControlError with the protocol's error code."""
    body = load_object(payload)
    raw_id = body.get("id")
    re_id = raw_id if isinstance(raw_id, str) and len(raw_id) <= MAX_REQUEST_ID_CHARS else None
    version = body.get("v")
    if type(version) is not int or version != SCHEMA_VERSION:  # not true, not 1.0
        raise ControlError("bad_version", f"schema version must be {SCHEMA_VERSION}", re_id)
    msg_type = body.get("type")
    if not isinstance(msg_type, str):
        raise ControlError("unknown_type", "'type' must be a message type name", re_id)
    if msg_type == "ack":
        battery = _number(body, "battery", 0, 100, required=False, integer=True)
        signal = _number(body, "signal", 0, 100, required=False, integer=True)
        return CommandAck(
            re=_field(body, "re", str, None, max_len=MAX_REQUEST_ID_CHARS),
            ok=_field(body, "ok", bool, None),
            detail=_field(body, "detail", str, None, required=False),
            battery=None if battery is None else int(battery),
            signal=None if signal is None else int(signal),
        )
    if msg_type == "rr":
        try:
            return parse_rr(body)
        except ControlError as exc:
            raise ControlError("bad_rr", exc.message, reply=False) from exc
    if msg_type not in REQUEST_TYPES:
        raise ControlError("unknown_type", f"unknown message type {msg_type!r}", re_id)
    if re_id is None:
        raise ControlError(
            "bad_field", f"'id' must be a string of at most {MAX_REQUEST_ID_CHARS} characters"
        )
    if msg_type == "floor_request":
        tg, call = _target(body, re_id)
        emergency = _field(body, "emergency", bool, re_id, required=False) or False
        return FloorRequest(re_id, tg, call, emergency)
    if msg_type == "floor_release":
        tg, call = _target(body, re_id)
        return FloorRelease(re_id, tg, call)
    if msg_type == "affiliate":
        tgs = body.get("tgs")
        if (
            not isinstance(tgs, list)
            or len(tgs) > MAX_AFFILIATE_TGS
            or not all(is_talkgroup_id(t) for t in tgs)
        ):
            raise ControlError("bad_field", "'tgs' must be a list of talkgroup ids", re_id)
        return Affiliate(re_id, tuple(dict.fromkeys(tgs)))
    if msg_type == "sos":
        return _parse_sos(body, re_id)
    if msg_type == "report":
        return _parse_report(body, re_id)
    return StatusMessage(
        re_id,
        _field(body, "code", str, re_id, max_len=MAX_STATUS_CODE_CHARS),
        _field(body, "text", str, re_id, required=False, max_len=MAX_STATUS_TEXT_CHARS),
        _incident(body, re_id),
    )


def _incident(body: dict[str, Any], re_id: str) -> int | None:
    value = body.get("incident")
    if value is None:
        return None
    if type(value) is not int or not 1 <= value <= MAX_INCIDENT_ID:
        raise ControlError("bad_field", "'incident' must be an incident number", re_id)
    return value


def _parse_report(body: dict[str, Any], re_id: str) -> IncidentReport:
    category = body.get("category")
    if not isinstance(category, str) or not is_category_id(category):
        raise ControlError("bad_field", "'category' must be a category id", re_id)
    text = _field(body, "text", str, re_id, max_len=MAX_REPORT_TEXT_CHARS)
    if not text.strip():
        raise ControlError("bad_field", "'text' must not be empty", re_id)
    try:
        lat = _number(body, "lat", -90, 90, required=False)
        lon = _number(body, "lon", -180, 180, required=False)
    except ControlError as exc:
        raise ControlError("bad_field", exc.message, re_id) from exc
    if (lat is None) != (lon is None):
        raise ControlError("bad_field", "'lat' and 'lon' come together", re_id)
    voice = _field(body, "voice", bool, re_id, required=False) or False
    return IncidentReport(re_id, category, text, lat, lon, voice)


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    state: str
    reason: str | None
    battery: int | None


def parse_status(payload: bytes) -> DeviceStatus:
    """Parse a retained status message (§4); raise ControlError when it is not one."""
    if not payload:
        raise ControlError("bad_json", "empty status (retained message cleared)")
    body = load_object(payload)
    if body.get("state") not in ("online", "offline"):
        raise ControlError("bad_field", "'state' must be online or offline")
    battery, reason = body.get("battery"), body.get("reason")
    return DeviceStatus(
        state=body["state"],
        reason=reason[:MAX_REASON_CHARS] if isinstance(reason, str) else None,
        battery=battery if type(battery) is int and 0 <= battery <= 100 else None,
    )
