"""The terminal side of docs/protocol.md as a sans-I/O session: no sockets, no threads, no clock.

A :class:`TerminalSession` builds every message a terminal sends (status, control requests,
beacons, voice frames), classifies every message it receives, keeps the terminal's view of each
floor (granted burst, queue position, who talks) and retransmits unanswered requests: a request
is sent up to ``RetryPolicy.tries`` times within ``RetryPolicy.window_s`` (MCPTT-like: 3 tries in
6 s) with the same id, because the gateway answers repeated requests idempotently (§6 Retries).

The I/O shells — :mod:`devices.client` (paho, blocking) and :mod:`devices.aio_client` (asyncio,
used by the firmware simulator and the softphone) — move bytes and call :meth:`poll` on time.
The values it trades in live in :mod:`devices.values` (re-exported here); topics, ids and
limits come from :mod:`protocol`.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

from codec.frame import (
    HEADER,
    HEADER_SIZE,
    RESERVED_FLAGS,
    FrameError,
    VoiceFrame,
    encode_frame,
    parse_frame,
)
from devices.values import (
    CALL_PREFIX,
    COMMANDS,
    GATEWAY_STATUS,
    MAX_JSON_BYTES,
    REPLY_TYPES,
    ROOT,
    Beacon,
    Command,
    Control,
    Dropped,
    FloorNews,
    FloorView,
    FrameIn,
    GatewayStatus,
    Incoming,
    Outgoing,
    PeerStatus,
    PendingRequest,
    Reply,
    RetryPolicy,
    ScanList,
    SessionError,
    body_key,
    key_fields,
    target_key,
)
from protocol import topics
from protocol.ids import is_device_id

__all__ = [
    "CALL_PREFIX",
    "COMMANDS",
    "GATEWAY_STATUS",
    "MAX_JSON_BYTES",
    "REPLY_TYPES",
    "ROOT",
    "Beacon",
    "Command",
    "Control",
    "Dropped",
    "FloorNews",
    "FloorView",
    "FrameIn",
    "GatewayStatus",
    "Incoming",
    "Outgoing",
    "PeerStatus",
    "PendingRequest",
    "Reply",
    "RetryPolicy",
    "ScanList",
    "SessionCounters",
    "SessionError",
    "TerminalSession",
    "body_key",
    "key_fields",
    "target_key",
]
_UNKNOWN, _TG_DOWN, _TG_CTRL, _VOICE_DOWN = 0, 1, 2, 3


@dataclass(slots=True)
class SessionCounters:
    requests: int = 0
    retries: int = 0
    expired: int = 0
    own_echo: int = 0
    bad_frames: int = 0
    bad_json: int = 0
    unknown_topic: int = 0


class TerminalSession:
    """Protocol state of one terminal; every method takes the time it runs at."""

    def __init__(
        self,
        device_id: str,
        *,
        retry: RetryPolicy | None = None,
        fw: str = "xixin-sim-1.0",
        request_prefix: str | None = None,
        decode_frames: bool = True,
    ) -> None:
        if not is_device_id(device_id):
            raise SessionError(f"{device_id!r} is not a device id (1-32 of A-Z a-z 0-9 _ -)")
        self.device_id = device_id
        # A listener that only accounts for frames (simulated fleets) reads the 12-byte header;
        # the gateway has validated every frame it relays.
        self.decode_frames = decode_frames
        self.retry = retry or RetryPolicy()
        self.fw = fw
        self._prefix = request_prefix or device_id
        self._ids = itertools.count(1)
        self.pending: dict[str, PendingRequest] = {}
        self.floors: dict[str, FloorView] = {}
        self.talkgroups: tuple[str, ...] = ()  # accepted by the last `affiliated`
        self.stunned = False
        self.counters = SessionCounters()
        self._routes: dict[str, tuple[int, str]] = {}
        self.status_topic = topics.status(device_id)
        self.ctrl_up = topics.ctrl_up(device_id)
        self.ctrl_down = topics.ctrl_down(device_id)
        self.gps_topic = topics.gps(device_id)
        self.call_up = topics.call_up(device_id)
        self.voice_down = topics.voice_down(device_id)

    # ---- topics ---------------------------------------------------------------------------

    tg_down = staticmethod(topics.tg_down)
    tg_ctrl = staticmethod(topics.tg_ctrl)

    def tg_up(self, tg: str) -> str:
        return topics.tg_up(tg, self.device_id)

    def base_subscriptions(self) -> list[tuple[str, int]]:
        return topics.terminal_subscriptions(self.device_id)

    @staticmethod
    def talkgroup_subscriptions(tgs: list[str] | tuple[str, ...]) -> list[tuple[str, int]]:
        return topics.talkgroup_subscriptions(tgs)

    def floor(self, key: str) -> FloorView:
        view = self.floors.get(key)
        if view is None:
            view = self.floors[key] = FloorView(key)
        return view

    # ---- building messages ----------------------------------------------------------------

    def will(self) -> Outgoing:
        """The Last Will (§1): written by the broker if we vanish."""
        return Outgoing(
            self.status_topic, _json({"v": 1, "state": "offline", "reason": "lost"}), 1, True
        )

    def status(
        self,
        state: str,
        wall_ms: int,
        *,
        battery: int | None = None,
        reason: str | None = None,
    ) -> Outgoing:
        if state not in ("online", "offline"):
            raise SessionError(f"status state must be online or offline, not {state!r}")
        body: dict[str, Any] = {"v": 1, "state": state, "ts": wall_ms, "fw": self.fw}
        if battery is not None:
            body["battery"] = max(0, min(100, int(battery)))
        if reason is not None:
            body["reason"] = reason
        return Outgoing(self.status_topic, _json(body), 1, True)

    def request(self, msg_type: str, now: float, **fields: Any) -> tuple[PendingRequest, Outgoing]:
        """A control request with a fresh id, remembered until its reply or its deadline."""
        request_id = f"{self._prefix}-{next(self._ids)}"
        body = {"v": 1, "type": msg_type, "id": request_id}
        body.update((k, v) for k, v in fields.items() if v is not None)
        message = Outgoing(self.ctrl_up, _json(body), 1)
        pending = PendingRequest(
            request_id,
            msg_type,
            message,
            first_sent=now,
            next_try=now + self.retry.interval_s,
            deadline=now + self.retry.window_s,
        )
        self.pending[request_id] = pending
        self.counters.requests += 1
        key = body_key(body)
        if key is not None and msg_type == "floor_request":
            view = self.floor(key)
            view.request_id = request_id
            if view.state not in ("granted", "revoked"):
                view.state = "requesting"
        return pending, message

    def floor_request(
        self, now: float, *, tg: str | None = None, call: str | None = None, emergency: bool = False
    ) -> tuple[PendingRequest, Outgoing]:
        key = target_key(tg, call)
        return self.request("floor_request", now, emergency=emergency or None, **key_fields(key))

    def floor_release(
        self, now: float, *, tg: str | None = None, call: str | None = None
    ) -> tuple[PendingRequest, Outgoing]:
        key = target_key(tg, call)
        view = self.floor(key)
        view.request_id = None
        if view.state in ("requesting", "queued", "granted", "revoked"):
            view.state = "idle" if view.holder in (None, self.device_id) else "taken"
            view.position = None
        return self.request("floor_release", now, **key_fields(key))

    def affiliate(
        self, now: float, tgs: list[str] | tuple[str, ...]
    ) -> tuple[PendingRequest, Outgoing]:
        for tg in tgs:
            target_key(tg=tg)
        return self.request("affiliate", now, tgs=list(tgs))

    def sos(
        self, now: float, active: bool, lat: float | None = None, lon: float | None = None
    ) -> tuple[PendingRequest, Outgoing]:
        """Raise or cancel an SOS; with the terminal's own position when it has a fix (§5.1)."""
        if (lat is None) != (lon is None):
            raise SessionError("an SOS position needs both lat and lon")
        return self.request("sos", now, active=active, lat=lat, lon=lon)

    def status_msg(
        self, now: float, code: str, text: str | None = None, incident: int | None = None
    ) -> tuple[PendingRequest, Outgoing]:
        return self.request("status_msg", now, code=code, text=text, incident=incident)

    def incident_report(
        self,
        now: float,
        category: str,
        text: str,
        lat: float | None = None,
        lon: float | None = None,
        voice: bool = False,
    ) -> tuple[PendingRequest, Outgoing]:
        """An incident report (protocol §5.6); `voice`: the next talk burst is its voice note."""
        return self.request(
            "report", now, category=category, text=text, lat=lat, lon=lon, voice=voice or None
        )

    def ack(
        self,
        command_id: str,
        ok: bool = True,
        detail: str | None = None,
        *,
        battery: int | None = None,
        signal: int | None = None,
    ) -> Outgoing:
        """The answer to a `command` (§5.4); a `radio_check`'s carries battery and signal."""
        body: dict[str, Any] = {"v": 1, "type": "ack", "re": command_id, "ok": ok}
        if detail is not None:
            body["detail"] = detail
        for name, value in (("battery", battery), ("signal", signal)):
            if value is not None:
                if not 0 <= value <= 100:
                    raise SessionError(f"{name} must be 0..100")
                body[name] = int(value)
        return Outgoing(self.ctrl_up, _json(body), 1)

    def report(self, report: dict[str, Any]) -> Outgoing:
        """A receiver report (`rr`, §9) built by :func:`devices.values.report_message`."""
        if report.get("type") != "rr":
            raise SessionError("a receiver report has type rr")
        return Outgoing(self.ctrl_up, _json(report), 0)

    def beacon(self, beacon: Beacon) -> Outgoing:
        return Outgoing(self.gps_topic, beacon.to_json(), 1)

    def frame(self, frame: VoiceFrame, key: str) -> Outgoing:
        """A voice frame for a talkgroup, or the private call uplink for a key ``call:…``."""
        topic = self.call_up if key.startswith(CALL_PREFIX) else self.tg_up(key)
        return Outgoing(topic, encode_frame(frame), 0)

    # ---- timers ---------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        if not self.pending:
            return None
        return min(min(p.next_try, p.deadline) for p in self.pending.values())

    def poll(self, now: float) -> tuple[list[Outgoing], list[PendingRequest]]:
        """Retransmissions due now, and requests that went unanswered for the whole window."""
        resend: list[Outgoing] = []
        expired: list[PendingRequest] = []
        for pending in list(self.pending.values()):
            if now >= pending.deadline:
                del self.pending[pending.id]
                expired.append(pending)
                self.counters.expired += 1
                self._on_expired(pending)
            elif now >= pending.next_try and pending.tries < self.retry.tries:
                pending.tries += 1
                pending.next_try = pending.first_sent + pending.tries * self.retry.interval_s
                resend.append(pending.message)
                self.counters.retries += 1
        return resend, expired

    def _on_expired(self, pending: PendingRequest) -> None:
        if pending.type != "floor_request":
            return
        for view in self.floors.values():
            if view.request_id == pending.id and view.state == "requesting":
                view.state = "idle" if view.holder is None else "taken"
                view.reason = "no_reply"
                view.request_id = None

    def forget_pending(self) -> list[PendingRequest]:
        """Drop every pending request (the connection is gone); returns them."""
        dropped = list(self.pending.values())
        self.pending.clear()
        for view in self.floors.values():
            if view.state in ("requesting", "queued", "granted", "revoked"):
                view.state = "idle"
                view.request_id = None
        return dropped

    # ---- receiving ------------------------------------------------------------------------

    def _route(self, topic: str) -> tuple[int, str]:
        route = self._routes.get(topic)
        if route is None:
            route = (_UNKNOWN, "")
            parsed = topics.talkgroup_topic(topic)
            if parsed is not None:
                tg, kind = parsed
                route = (_TG_DOWN if kind == "down" else _TG_CTRL if kind == "ctrl" else 0, tg)
            elif topic == self.voice_down:
                route = (_VOICE_DOWN, "")
            if len(self._routes) < 256:
                self._routes[topic] = route
        return route

    def downlink_talkgroup(self, topic: str) -> str | None:
        """The talkgroup of a `tg/{tg}/down` topic, else None (cached per topic)."""
        kind, tg = self._route(topic)
        return tg if kind == _TG_DOWN else None

    def on_message(self, topic: str, payload: bytes) -> Incoming:
        """Classify one received message and update the floor views."""
        kind, tg = self._route(topic)
        if kind == _TG_DOWN:
            return self._frame(tg, payload)
        if kind == _TG_CTRL:
            body = self._json(payload)
            if body is None:
                return Dropped("bad_json")
            self._floor_news(body)
            return FloorNews(body)
        if kind == _VOICE_DOWN:
            return self._frame(None, payload)
        if topic == self.ctrl_down:
            body = self._json(payload)
            if body is None:
                return Dropped("bad_json")
            return self._control(body)
        instance = topics.gateway_status_instance(topic)
        if instance is not None:
            body = self._json(payload) if payload else {}
            if body is None:
                return Dropped("bad_json")
            return GatewayStatus(instance, body.get("state") == "online")
        peer = topics.device_status_id(topic)
        if peer is not None:
            body = self._json(payload)
            if body is None:
                return Dropped("bad_json")
            return PeerStatus(peer, body)
        self.counters.unknown_topic += 1
        return Dropped("unknown_topic")

    def _json(self, payload: bytes) -> dict[str, Any] | None:
        try:
            body = json.loads(payload) if len(payload) <= MAX_JSON_BYTES else None
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            body = None
        if not isinstance(body, dict):
            self.counters.bad_json += 1
            return None
        return body

    def _frame(self, tg: str | None, payload: bytes) -> Incoming:
        frame: VoiceFrame | None = None
        try:
            if self.decode_frames:
                frame = parse_frame(payload)
                burst, seq, timestamp = frame.burst, frame.seq, frame.timestamp
                end, audio = frame.end, bool(frame.packets)
            else:
                # Header only (version and flags checked; the gateway validated the frame).
                if len(payload) < HEADER_SIZE:
                    raise FrameError("frame shorter than its header")
                version, flags, burst, seq, timestamp, _units, count = HEADER.unpack_from(payload)
                if version != 1 or flags & RESERVED_FLAGS:
                    raise FrameError("unknown frame version or reserved flags")
                end, audio = bool(flags & 0x02), count > 0
        except FrameError:
            self.counters.bad_frames += 1
            return Dropped("bad_frame")
        if tg is None:
            return FrameIn(self._call_key_for(burst), burst, seq, timestamp, end, audio, frame)
        view = self.floors.get(tg)
        if view is not None and view.is_own(burst):
            self.counters.own_echo += 1
            return Dropped("own_echo")
        return FrameIn(tg, burst, seq, timestamp, end, audio, frame)

    def _call_key_for(self, burst: int) -> str:
        # voice/down carries no peer id: find the private call whose current burst this is.
        calls = [(key, view) for key, view in self.floors.items() if key.startswith(CALL_PREFIX)]
        for key, view in calls:
            if view.burst == burst:
                return key
        for key, view in calls:  # a burst in its release tail (§6)
            if view.previous_burst == burst:
                return key
        return CALL_PREFIX + "unknown"

    def _control(self, body: dict[str, Any]) -> Incoming:
        msg_type = body.get("type")
        if msg_type == "command":
            command_id, cmd = body.get("id"), body.get("cmd")
            if isinstance(command_id, str) and isinstance(cmd, str):
                if cmd == "stun":
                    self.stunned = True
                elif cmd == "revive":
                    self.stunned = False
                return Command(command_id, cmd, body)
            self.counters.bad_json += 1
            return Dropped("bad_json")
        self._floor_reply(body)
        re_id = body.get("re")
        if isinstance(re_id, str) and msg_type in REPLY_TYPES:
            pending = self.pending.pop(re_id, None)
            if pending is not None:
                if msg_type == "affiliated":
                    tgs = body.get("tgs")
                    listed = tgs if isinstance(tgs, list) else []
                    self.talkgroups = tuple(t for t in listed if isinstance(t, str))
                return Reply(pending, body)
        if msg_type == "floor_taken":
            self._floor_news(body)  # late entry: the broadcast repeated on our ctrl/down
        return Control(body)

    def _floor_reply(self, body: dict[str, Any]) -> None:
        key = body_key(body)
        msg_type = body.get("type")
        if key is None or not isinstance(msg_type, str) or not msg_type.startswith("floor_"):
            return
        view = self.floor(key)
        burst = _int(body.get("burst"))
        if msg_type == "floor_granted" and burst is not None:
            if burst != view.own_burst:
                view.previous_own_burst = view.own_burst
            # Granted straight from the queue, no floor_idle or floor_taken comes between.
            view.move_burst(burst)
            view.state, view.own_burst = "granted", burst
            view.holder, view.position = self.device_id, None
            view.max_ms = _int(body.get("max_ms"))
            view.request_id = body.get("re") if isinstance(body.get("re"), str) else view.request_id
        elif msg_type == "floor_queued":
            if view.state in ("requesting", "queued"):
                view.state = "queued"
            view.position = _int(body.get("position"))
        elif msg_type == "floor_deny":
            view.reason = str(body.get("reason"))
            if view.state in ("requesting", "queued"):
                view.state = "idle" if view.holder in (None, self.device_id) else "taken"
                view.position = None
                view.request_id = None
        elif msg_type == "floor_revoke":
            if burst == view.own_burst:
                view.state = "revoked"
                view.reason = str(body.get("reason"))
                view.grace_ms = _int(body.get("grace_ms")) or 0
        elif msg_type == "floor_released" and view.holder == self.device_id:
            view.state, view.holder = "idle", None

    def _floor_news(self, body: dict[str, Any]) -> None:
        key = body_key(body)
        if key is None:
            return
        view = self.floor(key)
        if body.get("type") == "floor_taken":
            by, burst = body.get("by"), body.get("burst")
            view.holder = by if isinstance(by, str) else None
            view.move_burst(_int(burst))
            priority = body.get("priority")
            view.priority = priority if isinstance(priority, str) else None
            if by != self.device_id and view.state in ("idle", "granted", "revoked", "taken"):
                view.state = "taken"
        elif body.get("type") == "floor_idle":
            view.move_burst(None)
            view.holder, view.priority = None, None
            if view.state in ("taken", "granted", "revoked"):
                view.state = "idle"


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _int(value: object) -> int | None:
    """An integer field of a gateway message; a bool (JSON true) is not one."""
    return value if type(value) is int else None
