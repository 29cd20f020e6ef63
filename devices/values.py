"""Values of the terminal side (docs/protocol.md): what a terminal sends and what it receives,
already classified. :mod:`devices.session` builds and parses them; the contract's own facts
(topics, ids, limits, message types, floor keys) come from :mod:`protocol`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from codec.errors import ReportError
from codec.frame import VoiceFrame
from codec.protection import ReceiverReport
from devices.errors import DevicesError
from protocol import keys, topics
from protocol.control import COMMANDS, REPLY_TYPES, parse_rr, rr_body
from protocol.errors import ProtocolError
from protocol.ids import is_device_id
from protocol.keys import CALL_PREFIX, body_key, key_fields
from protocol.limits import MAX_JSON_BYTES
from protocol.topics import ROOT

__all__ = [
    "CALL_PREFIX",
    "COMMANDS",
    "MAX_JSON_BYTES",
    "REPLY_TYPES",
    "ROOT",
    "body_key",
    "key_fields",
]

GATEWAY_STATUS: Final = topics.GATEWAY_STATUS_FILTER


class SessionError(DevicesError):
    """A message the session cannot build or a value outside the protocol."""


# ---- values ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One MQTT publish to make."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Send a request `tries` times, evenly spaced, and give up `window_s` after the first."""

    tries: int = 3
    window_s: float = 6.0

    def __post_init__(self) -> None:
        if self.tries < 1 or self.window_s <= 0:
            raise SessionError("a retry policy needs tries >= 1 and a positive window")

    @property
    def interval_s(self) -> float:
        return self.window_s / self.tries


@dataclass(slots=True)
class PendingRequest:
    id: str
    type: str
    message: Outgoing
    first_sent: float
    tries: int = 1
    next_try: float = 0.0
    deadline: float = 0.0


@dataclass(frozen=True, slots=True)
class Beacon:
    """A GPS fix as sent on `dev/{dev}/gps` (§7). `ts` is the fix time in Unix ms."""

    ts: int
    lat: float
    lon: float
    acc: float | None = None
    spd: float | None = None
    crs: float | None = None
    alt: float | None = None
    bat: int | None = None
    sat: int | None = None

    def __post_init__(self) -> None:
        if not -90.0 <= self.lat <= 90.0 or not -180.0 <= self.lon <= 180.0:
            raise SessionError(f"beacon position {self.lat}, {self.lon} out of range")
        if self.ts <= 0:
            raise SessionError(f"beacon ts {self.ts} is not a time (ms since the epoch, > 0)")

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"v": 1, "ts": self.ts, "lat": self.lat, "lon": self.lon}
        for name in ("acc", "spd", "crs", "alt", "bat", "sat"):
            value = getattr(self, name)
            if value is not None:
                body[name] = round(value, 1) if isinstance(value, float) else value
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, payload: bytes) -> Beacon:
        try:
            body = json.loads(payload)
            return cls(
                ts=int(body["ts"]),
                lat=float(body["lat"]),
                lon=float(body["lon"]),
                acc=body.get("acc"),
                spd=body.get("spd"),
                crs=body.get("crs"),
                alt=body.get("alt"),
                bat=body.get("bat"),
                sat=body.get("sat"),
            )
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise SessionError(f"not a beacon: {exc}") from exc


def target_key(tg: str | None = None, call: str | None = None) -> str:
    """The key of a floor: the talkgroup id, or ``call:{peer}`` for a private call."""
    try:
        return keys.target_key(tg, call)
    except (ProtocolError, ValueError) as exc:
        raise SessionError(str(exc)) from exc


def report_message(report: ReceiverReport) -> dict[str, Any]:
    """The `rr` message (§9.1) of what this terminal measured on a burst."""
    return rr_body(
        burst=report.burst,
        loss_pct=report.loss_pct,
        jitter_ms=report.jitter_ms,
        tg=report.tg,
        call=report.call,
        expected=report.expected,
        received=report.received,
        interval_ms=report.interval_ms,
        late_pct=report.late_pct,
        sender=report.sender,
    )


def forwarded_report(body: dict[str, Any]) -> ReceiverReport:
    """The `rr` the gateway forwards to a talker (§9.2): a listener's report plus `from`, the
    reporting device (for a private call `call` is then the reporter). SessionError if invalid."""
    sender = body.get("from")
    if not isinstance(sender, str) or not is_device_id(sender):
        raise SessionError("a forwarded receiver report names its reporter in 'from'")
    try:
        fields = parse_rr(body)
        extra = fields.extra
        return ReceiverReport(
            burst=fields.burst,
            loss_pct=fields.loss_pct,
            jitter_ms=fields.jitter_ms,
            tg=fields.tg,
            call=fields.call,
            expected=extra.get("expected"),
            received=extra.get("received"),
            late_pct=fields.late_pct,
            interval_ms=extra.get("interval_ms"),
            sender=sender,
        )
    except (ProtocolError, ReportError) as exc:
        raise SessionError(f"not a receiver report: {exc}") from exc


@dataclass(slots=True)
class FloorView:
    """What this terminal knows about one floor."""

    key: str
    state: str = "idle"  # idle | requesting | queued | granted | revoked | taken (by another)
    burst: int | None = None  # the current burst on the floor, ours or another's
    # the one before it: the gateway may still relay it after its release (§6 release tail)
    previous_burst: int | None = None
    holder: str | None = None
    priority: str | None = None
    own_burst: int | None = None  # our latest burst here: its echoes are discarded (§2)
    # and the one before: the gateway may still relay it after our release (§6 release tail)
    previous_own_burst: int | None = None
    position: int | None = None
    max_ms: int | None = None
    grace_ms: int | None = None
    reason: str | None = None  # last deny / revoke reason
    request_id: str | None = None

    def move_burst(self, burst: int | None) -> None:
        """The floor's current burst is now `burst` (None: idle); the one it replaces becomes
        `previous_burst`, whose frames may still come (§6 release tail)."""
        if self.burst is not None and self.burst != burst:
            self.previous_burst = self.burst
        self.burst = burst

    def is_own(self, burst: int) -> bool:
        """A burst of ours: its echoes are discarded (§2), the one before too (§6 tail)."""
        return burst in (self.own_burst, self.previous_own_burst)


# ---- what came in ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """The first reply to one of our requests."""

    request: PendingRequest
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Control:
    """Any other `ctrl/down` message: late grant/deny, queue update, revoke, late entry…"""

    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Command:
    """A dispatcher command (§5.4); answer it with :meth:`TerminalSession.ack`."""

    id: str
    cmd: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FloorNews:
    """A talkgroup floor broadcast (`floor_taken` / `floor_idle`, §5.3)."""

    body: dict[str, Any]


class FrameIn(NamedTuple):
    """A voice frame for us. A tuple, not a dataclass: fleets receive tens of thousands a second.

    `frame` is the parsed frame, or None when the session does not decode frames (a listener
    that only accounts for them reads the header fields).
    """

    key: str  # talkgroup id or call:{peer}
    burst: int
    seq: int
    timestamp: int
    end: bool
    audio: bool  # carries at least one packet (not a bare END marker)
    frame: VoiceFrame | None


@dataclass(frozen=True, slots=True)
class PeerStatus:
    device: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    """A gateway instance's presence (`gw/{instance}/status`); on `online` the client
    re-affiliates, since gateway state lives in memory (§2)."""

    instance: str
    online: bool


@dataclass(frozen=True, slots=True)
class Dropped:
    reason: str  # own_echo | bad_frame | bad_json | unknown_topic


Incoming = Reply | Control | Command | FloorNews | FrameIn | PeerStatus | GatewayStatus | Dropped


@dataclass(slots=True)
class ScanList:
    """Which talkgroup to play when several are active: the selected one, then by priority.

    Radio scanning: a terminal listens to its whole scan list but plays one call at a time; a
    call on a higher-priority talkgroup interrupts a lower one, otherwise the current call keeps
    the speaker until it ends.
    """

    selected: str
    priority: list[str] = field(default_factory=list)  # highest first, after `selected`
    playing: str | None = None

    def rank(self, key: str) -> int:
        if key == self.selected:
            return 0
        if key in self.priority:
            return 1 + self.priority.index(key)
        return 1 + len(self.priority)

    def offer(self, key: str) -> bool:
        """A frame arrived on `key`: True if it is the call to play (switching if it outranks)."""
        if self.playing is None or self.playing == key or self.rank(key) < self.rank(self.playing):
            self.playing = key
            return True
        return False

    def ended(self, key: str) -> None:
        if self.playing == key:
            self.playing = None
