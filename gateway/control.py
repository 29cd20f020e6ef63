"""The gateway's control plane, sans-I/O: control messages and presence in, messages out.

`ControlPlane.handle(topic, payload, now, wall_ms)` and `tick(now, wall_ms)` append what must be
published to `outbox` and what must be stored or streamed to `events`; the runner drains both.
`now` is a monotonic clock (floor timers), `wall_ms` the epoch time put into messages.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gateway import topics
from gateway.directory import DeviceInfo, Directory
from gateway.events import GatewayEvent, Outbound
from gateway.floor import (
    Denied,
    Floor,
    FloorConfig,
    FloorEvent,
    Granted,
    Idle,
    Priority,
    Queued,
    Released,
    Revoked,
    Taken,
)
from gateway.log_once import LogOnce
from gateway.messages import (
    Affiliate,
    CommandAck,
    ControlError,
    FloorRelease,
    FloorRequest,
    ReceiverReport,
    Request,
    Sos,
    StatusMessage,
    encode,
    parse_request,
    parse_status,
)
from gateway.metrics import Counters
from gateway.relay import Relay

log = logging.getLogger(__name__)
_TO_DEVICE = (Granted, Queued, Denied, Revoked, Released)
_UNANSWERED = (CommandAck, ReceiverReport)  # requests the protocol never replies to
_COUNTED: dict[type[FloorEvent], str] = {
    Granted: "grant",
    Queued: "queued",
    Denied: "deny",
    Revoked: "revoke",
}
RR_WINDOW_S = 0.5  # at most one forwarded receiver report per talker per window (§9.2)
CALL_IDLE_S = 60.0  # a private call idle this long is forgotten (§6)
MAX_RETIRED_CALLS = 10_000  # device pairs whose burst/call numbering is remembered


@dataclass(slots=True)
class Presence:
    state: str = "unknown"
    since_ms: int = 0
    battery: int | None = None


@dataclass(frozen=True, slots=True)
class _Target:
    """What a floor is for: a talkgroup, or a private call between two devices."""

    tg: str | None = None
    parties: tuple[str, str] | None = None

    def field_for(self, device: str) -> dict[str, str]:
        if self.tg is not None:
            return {"tg": self.tg}
        assert self.parties is not None
        a, b = self.parties
        return {"call": b if device == a else a}


class ControlPlane:
    def __init__(
        self,
        directory: Directory,
        relay: Relay,
        counters: Counters,
        floor_config: FloorConfig | None = None,
        logger: logging.Logger | None = None,
        *,
        call_idle_s: float = CALL_IDLE_S,
    ) -> None:
        self.directory = directory
        self.call_idle_s = call_idle_s
        self.relay = relay
        self.counters = counters
        self.floor_config = floor_config or FloorConfig()
        self.log = logger or log
        self.outbox: list[Outbound] = []
        self.events: list[GatewayEvent] = []
        self.targets: dict[str, _Target] = {}
        self.affiliations: dict[str, set[str]] = {}
        self.presence: dict[str, Presence] = {}
        self.sos: set[str] = set()
        self.stunned: set[str] = set()
        self.commands: dict[str, tuple[str, str]] = {}  # id -> (device, cmd)
        self._next_command = 0
        self._log_once = LogOnce(self.log)
        self._rr_pending: dict[str, tuple[str, ReceiverReport]] = {}  # talker -> worst report
        self._rr_sent: dict[str, float] = {}  # talker -> when a report last went out
        # Private calls idle for call_idle_s are dropped; their numbering is kept here, so a
        # later call between the same two devices continues burst ids and call numbers.
        self._retired_calls: dict[str, tuple[int, int]] = {}
        # Floor timers: a heap of (when, floor key) and each key's pending wake-up, so that a
        # tick visits only floors with something due, not every talkgroup 20 times a second.
        # Frames move a floor's end-of-media deadline later without telling us: a wake-up that
        # finds its deadline moved just sets the new one.
        self._timers: list[tuple[float, str]] = []
        self._wake: dict[str, float] = {}
        for tg in directory.talkgroups:
            self._add_talkgroup(tg)

    # ---- directory changes ------------------------------------------------------------------

    def _add_talkgroup(self, tg: str) -> None:
        self.relay.add_talkgroup(tg, Floor(tg, self.floor_config))
        self.targets[tg] = _Target(tg=tg)

    def update_directory(self, directory: Directory, now: float, wall_ms: int) -> None:
        """Take a new directory; devices that vanished or were disabled lose the floor."""
        self.directory = directory
        for tg in directory.talkgroups:
            if tg not in self.relay.floors:
                self._add_talkgroup(tg)
        for device in list(self.presence):
            info = directory.get(device)
            if info is None or not info.enabled:
                self._remove_everywhere(device, now, wall_ms)

    # ---- input ------------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes, now: float, wall_ms: int) -> None:
        parsed = topics.device_topic(topic)
        if parsed is None:
            self._reject("bad_topic", topic, "message on unexpected topic %s", topic)
            return
        device, rest = parsed
        if rest == "status":
            self._on_status(device, payload, now, wall_ms)
        elif rest == "ctrl/up":
            self._on_control(device, payload, now, wall_ms)
        else:
            self._reject("bad_topic", topic, "message on unexpected topic %s", topic)

    def _reject(self, reason: str, key: str, fmt: str, *args: object) -> None:
        """Count every rejection; log each (reason, key) only once."""
        self.counters.rejected[reason] = self.counters.rejected.get(reason, 0) + 1
        self._log_once.warning((reason, key), fmt, *args)

    def _reply(self, device: str, msg_type: str, **fields: Any) -> None:
        self.outbox.append(Outbound(topics.ctrl_down(device), encode(msg_type, **fields)))

    def _on_status(self, device: str, payload: bytes, now: float, wall_ms: int) -> None:
        if device not in self.directory.devices:
            if payload:  # an empty retained message is a deletion, not a device
                self._reject("unknown_device", device, "status from unknown device %s", device)
            return
        try:
            status = parse_status(payload)
        except ControlError as exc:
            self._reject(exc.code, device, "bad status from %s: %s", device, exc.message)
            return
        presence = self.presence.setdefault(device, Presence())
        if status.battery is not None:
            presence.battery = status.battery
        if presence.state == status.state:
            return
        presence.state, presence.since_ms = status.state, wall_ms
        self.events.append(
            GatewayEvent(
                "presence", device, wall_ms, {"state": status.state, "reason": status.reason}
            )
        )
        if status.state == "offline":
            self._remove_everywhere(device, now, wall_ms)

    def _remove_everywhere(self, device: str, now: float, wall_ms: int) -> None:
        for key, floor in self._floors_with(device):
            self._emit(key, floor.remove(device, now), wall_ms)

    def _floors_with(self, device: str) -> list[tuple[str, Floor]]:
        """Every floor (talkgroup or private call) that `device` holds or is queued on."""
        floors = list(self.relay.floors.items()) + list(self.relay.call_floors.items())
        return [
            (key, floor)
            for key, floor in floors
            if floor.holder == device or any(d == device for d, _ in floor.queue())
        ]

    def _on_control(self, device: str, payload: bytes, now: float, wall_ms: int) -> None:
        self.counters.control_in += 1
        info = self.directory.get(device)
        if info is None:
            self._reject("unknown_device", device, "control message from unknown device %s", device)
            self._reply(device, "error", code="unknown_device", message="device is not provisioned")
            return
        try:
            request = parse_request(payload)
            if not info.enabled:
                raise ControlError(
                    "disabled",
                    "device is disabled",
                    getattr(request, "id", None),
                    reply=not isinstance(request, _UNANSWERED),  # §5.1: ack and rr never are
                )
            self._dispatch(info, request, now, wall_ms)
        except ControlError as exc:
            self._reject(exc.code, device, "refused control from %s: %s", device, exc)
            if exc.reply:
                self._reply(device, "error", re=exc.re_id, code=exc.code, message=exc.message)

    def _dispatch(self, info: DeviceInfo, request: Request, now: float, wall_ms: int) -> None:
        if isinstance(request, FloorRequest):
            self._floor_request(info, request, now, wall_ms)
        elif isinstance(request, FloorRelease):
            key = (
                None
                if request.tg is not None and self._tg_refusal(info, request.tg)
                else self._floor_key(info, request.tg, request.call, create=False)
            )
            if key is None:  # nothing held or queued there: releasing it is already true
                self._reply(
                    info.id, "floor_released", re=request.id, tg=request.tg, call=request.call
                )
                return
            self._emit(key, self._floor(key).release(info.id, now, request.id), wall_ms)
        elif isinstance(request, Affiliate):
            self._affiliate(info, request, wall_ms)
        elif isinstance(request, Sos):
            self._sos(info, request, wall_ms)
        elif isinstance(request, StatusMessage):
            self.events.append(
                GatewayEvent(
                    "status_msg", info.id, wall_ms, {"code": request.code, "text": request.text}
                )
            )
            self._reply(info.id, "status_ack", re=request.id)
        elif isinstance(request, CommandAck):
            sent = self.commands.pop(request.re, None)
            self.events.append(
                GatewayEvent(
                    "command_ack",
                    info.id,
                    wall_ms,
                    {
                        "re": request.re,
                        "ok": request.ok,
                        "detail": request.detail,
                        "cmd": sent[1] if sent else None,
                    },
                )
            )
        elif isinstance(request, ReceiverReport):
            self.counters.receiver_reports += 1
            self._receiver_report(info, request, now)

    # ---- floor ------------------------------------------------------------------------------

    def _floor(self, key: str) -> Floor:
        floor = self.relay.floor(key)
        if floor is None:
            raise KeyError(key)
        return floor

    def _tg_refusal(self, info: DeviceInfo, tg: str) -> str | None:
        """Why this device may not take this talkgroup's floor (a §5.2 deny reason), if so."""
        if tg not in self.relay.floors:
            return "unknown_talkgroup"
        if tg not in info.talkgroups:
            return "not_member"
        return None

    def _floor_key(
        self, info: DeviceInfo, tg: str | None, call: str | None, *, create: bool
    ) -> str | None:
        """The floor of a talkgroup the caller has checked, or of a private call with `call`
        (made when `create`; None when there is none)."""
        if tg is not None:
            return tg
        assert call is not None
        a, b = sorted((info.id, call))
        key = f"call:{a}:{b}"
        if key not in self.relay.call_floors:
            if not create:
                return None
            next_burst, last_call = self._retired_calls.pop(key, (1, 0))
            floor = Floor(key, self.floor_config, next_burst, last_call=last_call)
            self.relay.add_call(key, floor, (a, b))
            self.targets[key] = _Target(parties=(a, b))
        return key

    def _deny(self, info: DeviceInfo, request: FloorRequest, reason: str) -> None:
        self.counters.floor["deny"] += 1
        self._reply(
            info.id, "floor_deny", re=request.id, tg=request.tg, call=request.call, reason=reason
        )

    def _floor_request(
        self, info: DeviceInfo, request: FloorRequest, now: float, wall_ms: int
    ) -> None:
        if info.id in self.stunned:
            self._deny(info, request, "stunned")
            return
        if request.call is not None:
            peer = self.directory.get(request.call)
            if peer is None or not peer.enabled or peer.id == info.id:
                self._deny(info, request, "no_such_device")
                return
            if self.presence.get(peer.id, Presence()).state != "online":
                self._deny(info, request, "peer_offline")
                return
        if request.tg is not None:
            refusal = self._tg_refusal(info, request.tg)
            if refusal is not None:
                self._deny(info, request, refusal)
                return
        key = self._floor_key(info, request.tg, request.call, create=True)
        assert key is not None
        if request.tg is not None:
            self.affiliations.setdefault(info.id, set()).add(request.tg)
        priority = info.priority
        if request.emergency or info.id in self.sos:
            priority = Priority.EMERGENCY
        self._emit(key, self._floor(key).request(info.id, priority, now, request.id), wall_ms)

    def _emit(self, key: str, floor_events: Iterable[FloorEvent], wall_ms: int) -> None:
        """Turn floor events into protocol messages (§5.2, §5.3) and stored events."""
        target = self.targets[key]
        counters = self.counters.floor
        for event in floor_events:
            if isinstance(event, _TO_DEVICE):
                counted = _COUNTED.get(type(event))
                if counted is not None:
                    counters[counted] += 1
                # Event fields are named as the protocol's message fields (§5.2).
                fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
                device = fields.pop("device")
                fields["re"] = fields.pop("request_id", None)
                self._reply(device, event.message, **fields, **target.field_for(device))
            elif isinstance(event, Taken):
                self._broadcast_taken(target, event, wall_ms)
            elif isinstance(event, Idle):
                self._broadcast_idle(target, wall_ms)
            self.events.append(
                GatewayEvent("floor", _event_device(event), wall_ms, _event_data(key, event))
            )
        self._schedule(key)

    def _schedule(self, key: str) -> None:
        """Set the floor's next wake-up: its next timer, or when an idle private call is due
        to be forgotten. An earlier pending wake-up stays; it re-checks when it fires."""
        floor = self.relay.floor(key)
        if floor is None:
            return
        when = floor.next_deadline()
        if when is None and key in self.relay.call_floors:
            since = floor.idle_since()
            when = None if since is None else since + self.call_idle_s
        if when is None:
            return
        pending = self._wake.get(key)
        if pending is not None and pending <= when:
            return
        self._wake[key] = when
        heapq.heappush(self._timers, (when, key))

    def _broadcast_taken(self, target: _Target, event: Taken, wall_ms: int) -> None:
        fields = {
            "by": event.by,
            "burst": event.burst,
            "priority": event.priority.label,
            "call_no": event.call,
            "ts": wall_ms,
        }
        if target.tg is not None:
            self.outbox.append(
                Outbound(topics.tg_ctrl(target.tg), encode("floor_taken", tg=target.tg, **fields))
            )
        else:
            assert target.parties is not None
            for party in target.parties:
                if party != event.by:
                    self._reply(party, "floor_taken", **target.field_for(party), **fields)

    def _broadcast_idle(self, target: _Target, wall_ms: int) -> None:
        if target.tg is not None:
            self.outbox.append(
                Outbound(topics.tg_ctrl(target.tg), encode("floor_idle", tg=target.tg, ts=wall_ms))
            )
        else:
            assert target.parties is not None
            for party in target.parties:
                self._reply(party, "floor_idle", ts=wall_ms, **target.field_for(party))

    # ---- receiver reports (§9.2) ---------------------------------------------------------------

    def _report_target(self, reporter: str, report: ReceiverReport) -> str | None:
        """The talker a report is about, if its burst is still the current one."""
        if report.tg is not None:
            floor = self.relay.floors.get(report.tg)
        else:
            assert report.call is not None
            a, b = sorted((reporter, report.call))
            floor = self.relay.call_floors.get(f"call:{a}:{b}")
        if floor is None or floor.holder is None or floor.burst != report.burst:
            return None
        if floor.holder == reporter or (report.call is not None and floor.holder != report.call):
            return None
        return floor.holder

    def _receiver_report(self, info: DeviceInfo, report: ReceiverReport, now: float) -> None:
        """Forward at most one report per talker per RR_WINDOW_S: the worst of the window."""
        talker = self._report_target(info.id, report)
        if talker is None:
            self.counters.rejected["stale_rr"] = self.counters.rejected.get("stale_rr", 0) + 1
            return
        pending = self._rr_pending.get(talker)
        if pending is None or report.miss_score > pending[1].miss_score:
            self._rr_pending[talker] = (info.id, report)
        self._flush_reports(now, only=talker)

    def _flush_reports(self, now: float, only: str | None = None) -> None:
        for talker in [only] if only is not None else list(self._rr_pending):
            if now - self._rr_sent.get(talker, -RR_WINDOW_S) < RR_WINDOW_S:
                continue
            reporter, report = self._rr_pending.pop(talker)
            if self._report_target(reporter, report) != talker:
                continue  # the burst ended while the report waited
            self._rr_sent[talker] = now
            fields = report.forward_fields()
            if report.call is not None:
                fields["call"] = reporter  # from the talker's side the call is with the reporter
            self._reply(talker, "rr", **fields, **{"from": reporter})

    def tick(self, now: float, wall_ms: int) -> None:
        """Fire due floor timers (max burst, end of media, grace, queue timeouts) and forget
        private calls idle for call_idle_s."""
        if self._rr_pending:
            self._flush_reports(now)
        timers, wake = self._timers, self._wake
        due = []
        while timers and timers[0][0] <= now:
            when, key = heapq.heappop(timers)
            if wake.get(key) == when:  # else superseded by an earlier wake-up that already ran
                del wake[key]
                due.append(key)
        # Wake-ups set while these run (<= now) wait for the next tick, as a tick's do.
        for key in due:
            floor = self.relay.floor(key)
            if floor is None:
                continue
            deadline = floor.next_deadline()
            if deadline is not None and deadline <= now:
                self._emit(key, floor.tick(now), wall_ms)  # schedules the next wake-up
                continue
            since = floor.idle_since()
            if (
                deadline is None
                and since is not None
                and key in self.relay.call_floors
                and now - since >= self.call_idle_s
            ):
                self._retire_call(key)
                continue
            self._schedule(key)

    def _retire_call(self, key: str) -> None:
        """A private call's floor and routes live while the call does, not for ever."""
        floor = self.relay.remove_call(key)
        self.targets.pop(key, None)
        if floor is None:
            return
        if len(self._retired_calls) >= MAX_RETIRED_CALLS:
            del self._retired_calls[next(iter(self._retired_calls))]  # the oldest
        self._retired_calls[key] = floor.resume_point

    def revoke(self, key: str, now: float, wall_ms: int) -> None:
        """A dispatcher's administrative revoke."""
        self._emit(key, self._floor(key).revoke(now), wall_ms)

    # ---- affiliation, SOS, commands -------------------------------------------------------

    def _affiliate(self, info: DeviceInfo, request: Affiliate, wall_ms: int) -> None:
        accepted = [tg for tg in request.tgs if tg in info.talkgroups and tg in self.relay.floors]
        rejected = [tg for tg in request.tgs if tg not in accepted]
        self.affiliations[info.id] = set(accepted)
        self._reply(info.id, "affiliated", re=request.id, tgs=accepted, rejected=rejected)
        for tg in accepted:  # late entry: tell who is talking right now
            floor = self.relay.floors[tg]
            if floor.holder is not None and floor.priority is not None:
                self._reply(
                    info.id,
                    "floor_taken",
                    tg=tg,
                    by=floor.holder,
                    burst=floor.burst,
                    priority=floor.priority.label,
                    call_no=floor.call,
                    ts=wall_ms,
                )

    def _sos(self, info: DeviceInfo, request: Sos, wall_ms: int) -> None:
        if request.active:
            self.sos.add(info.id)
        else:
            self.sos.discard(info.id)
        self.events.append(
            GatewayEvent("alarm", info.id, wall_ms, {"alarm": "sos", "active": request.active})
        )
        self._reply(info.id, "sos_ack", re=request.id)

    def send_command(self, device: str, cmd: str, now: float, wall_ms: int, **fields: Any) -> str:
        """Queue a `command` to a terminal; returns its id for matching the `ack`."""
        command_id = f"c{self._next_command + 1}"
        try:  # encoded before anything happens: a command that cannot be sent changes nothing
            payload = encode("command", id=command_id, cmd=cmd, **fields)
        except (TypeError, ValueError) as exc:
            raise ControlError("bad_field", f"command {cmd!r} cannot be encoded: {exc}") from exc
        self._next_command += 1
        self.commands[command_id] = (device, cmd)
        if cmd == "stun":
            self.stunned.add(device)
            self._silence(device, now, wall_ms)
        elif cmd == "revive":
            self.stunned.discard(device)
        self.outbox.append(Outbound(topics.ctrl_down(device), payload))
        self.events.append(GatewayEvent("command", device, wall_ms, {"id": command_id, "cmd": cmd}))
        return command_id

    def _silence(self, device: str, now: float, wall_ms: int) -> None:
        """A stunned device stops talking at once (§5.4, §6): an administrative revoke (grace
        0) of every floor it holds, and its queued requests leave their queues."""
        for key, floor in self._floors_with(device):
            held = floor.holder == device
            self._emit(key, floor.revoke(now) if held else floor.remove(device, now), wall_ms)


def _event_device(event: FloorEvent) -> str | None:
    if isinstance(event, Taken):
        return event.by
    device = getattr(event, "device", None)
    return device if isinstance(device, str) else None


def _event_data(key: str, event: FloorEvent) -> dict[str, Any]:
    data: dict[str, Any] = {"floor": key, "event": event.message}
    for name in ("burst", "reason", "position"):
        value = getattr(event, name, None)
        if value is not None:
            data[name] = value
    if isinstance(event, Taken):
        data["priority"] = event.priority.label
    return data
