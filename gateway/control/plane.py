"""The gateway's control plane, sans-I/O: control messages and presence in, messages out.

`ControlPlane.handle(topic, payload, now, wall_ms)` and `tick(now, wall_ms)` append what must be
published to `outbox` and what must be stored or streamed to `events`; the runner drains both.
`now` is a monotonic clock (floor timers), `wall_ms` the epoch time put into messages.

The plane routes each message to the part that does the job (presence, affiliation and SOS,
commands, receiver reports, private calls, floor timers) and owns the floors (`floors`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Set
from typing import Any

from gateway.budget import Budgets
from gateway.control.affiliation import Affiliations, SosAlarms
from gateway.control.announce import FloorAnnouncer
from gateway.control.calls import CALL_IDLE_S, PrivateCalls
from gateway.control.commands import Commands
from gateway.control.output import Output
from gateway.control.presence import Presence, PresenceTable
from gateway.control.reports import ReceiverReportThrottle
from gateway.control.timers import FloorTimers
from gateway.directory import DeviceInfo, Directory
from gateway.events import GatewayEvent, Outbound
from gateway.floor import Floor, FloorConfig, FloorEvent, Priority
from gateway.floors import FloorTable
from gateway.metrics import Counters
from gateway.relay import Relay
from protocol import limits, topics
from protocol.control import (
    Affiliate,
    CommandAck,
    ControlError,
    FloorRelease,
    FloorRequest,
    IncidentReport,
    ReceiverReport,
    Request,
    Sos,
    StatusMessage,
    parse_request,
    parse_status,
)

log = logging.getLogger(__name__)
_UNANSWERED = (CommandAck, ReceiverReport)  # requests the protocol never replies to
_RESERVED = (FloorRelease, Sos)  # still handled over the budget, from the reserve (§5.1)
_RESERVED_TYPES = (b'"floor_release"', b'"sos"')  # what a cheap look at the bytes can tell


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
        self.relay = relay
        self.counters = counters
        self.floor_config = floor_config or FloorConfig()
        self.log = logger or log
        self.out = Output(counters, self.log)
        self.outbox: list[Outbound] = self.out.outbox
        self.events: list[GatewayEvent] = self.out.events
        self.floors = FloorTable(routes=relay)
        self.roster = PresenceTable(self.out)
        self.affiliation = Affiliations(self.floors, self.out)
        self.alarms = SosAlarms(self.out)
        self.command_log = Commands(self.out)
        self.reports = ReceiverReportThrottle(self.floors, self.out)
        self.calls = PrivateCalls(self.floors, self.floor_config, call_idle_s)
        self.timers = FloorTimers()
        self._announcer = FloorAnnouncer(self.floors, self.out)
        # Per-device control budgets (§5.1), checked before a message is parsed.
        self.budget = Budgets(limits.CONTROL_RATE, limits.CONTROL_BURST)
        self.reserve = Budgets(limits.CONTROL_RESERVE_RATE, limits.CONTROL_RESERVE_BURST)
        for tg in directory.talkgroups:
            self._add_talkgroup(tg)

    # ---- read-only views (the API, tests and tools read these) ------------------------------

    @property
    def presence(self) -> Mapping[str, Presence]:
        return self.roster.states

    @property
    def affiliations(self) -> Mapping[str, Set[str]]:
        return self.affiliation.by_device

    @property
    def sos(self) -> Set[str]:
        return self.alarms.active

    @property
    def stunned(self) -> Set[str]:
        return self.command_log.stunned

    @property
    def commands(self) -> Mapping[str, tuple[str, str]]:
        """Commands sent and not yet acknowledged: id -> (device, cmd)."""
        return self.command_log.pending

    @property
    def call_idle_s(self) -> float:
        return self.calls.idle_s

    # ---- directory changes ------------------------------------------------------------------

    def _add_talkgroup(self, tg: str) -> None:
        self.floors.add_talkgroup(tg, Floor(tg, self.floor_config))

    def update_directory(self, directory: Directory, now: float, wall_ms: int) -> None:
        """Take a new directory; devices that vanished or were disabled lose the floor."""
        self.directory = directory
        for tg in directory.talkgroups:
            if tg not in self.floors.talkgroups:
                self._add_talkgroup(tg)
        for device in self.roster.devices():
            info = directory.get(device)
            if info is None or not info.enabled:
                self._remove_everywhere(device, now, wall_ms)
                self.command_log.went_offline(device, wall_ms)
            elif self.roster.get(device).state == "online" and self.command_log.queued(device):
                self._deliver(device, wall_ms)  # enabled again

    # ---- input ------------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes, now: float, wall_ms: int) -> None:
        parsed = topics.device_topic(topic)
        if parsed is None:
            self.out.reject("bad_topic", topic, "message on unexpected topic %s", topic)
            return
        device, rest = parsed
        if rest == "status":
            self._on_status(device, payload, now, wall_ms)
        elif rest == "ctrl/up":
            self._on_control(device, payload, now, wall_ms)
        else:
            self.out.reject("bad_topic", topic, "message on unexpected topic %s", topic)

    def _on_status(self, device: str, payload: bytes, now: float, wall_ms: int) -> None:
        if device not in self.directory.devices:
            if payload:  # an empty retained message is a deletion, not a device
                self.out.reject("unknown_device", device, "status from unknown device %s", device)
            return
        try:
            status = parse_status(payload)
        except ControlError as exc:
            self.out.reject(exc.code, device, "bad status from %s: %s", device, exc.message)
            return
        if not self.roster.update(device, status, wall_ms):
            return
        if status.state == "offline":
            self._remove_everywhere(device, now, wall_ms)
            self.command_log.went_offline(device, wall_ms)
        elif (info := self.directory.get(device)) is not None and info.enabled:
            self._deliver(device, wall_ms)

    def _deliver(self, device: str, wall_ms: int) -> None:
        """A terminal came online: its queued commands go out, and a stunned one is stunned
        again (it may have restarted and forgotten it, §5.4)."""
        payloads = self.command_log.deliver(device, wall_ms)
        for payload in payloads:
            self.out.publish(topics.ctrl_down(device), payload)
        if device in self.command_log.stunned and not any(b'"cmd":"stun"' in p for p in payloads):
            _, again = self.command_log.issue(device, "stun", {}, wall_ms)
            if again is not None:
                self.out.publish(topics.ctrl_down(device), again)

    def _remove_everywhere(self, device: str, now: float, wall_ms: int) -> None:
        for key, floor in self.floors.holding(device, now):
            self._emit(key, floor.remove(device, now), wall_ms)

    def _on_control(self, device: str, payload: bytes, now: float, wall_ms: int) -> None:
        self.counters.control_in += 1
        reserved = False
        if not self.budget.allow(device, now):
            # Over budget: refused unparsed, unless it looks like a release or an SOS and the
            # reserve has room (checked again once parsed). No JSON is read for the flood.
            if not (
                any(kind in payload for kind in _RESERVED_TYPES) and self.reserve.allow(device, now)
            ):
                self._rate_limited(device, payload, now, None)
                return
            reserved = True
        info = self.directory.get(device)
        if info is None:
            self.out.reject(
                "unknown_device", device, "control message from unknown device %s", device
            )
            self.out.reply(
                device, "error", code="unknown_device", message="device is not provisioned"
            )
            return
        try:
            request = parse_request(payload)
            if reserved and not isinstance(request, _RESERVED):
                self._rate_limited(device, payload, now, request)
                return
            if not info.enabled:
                raise ControlError(
                    "disabled",
                    "device is disabled",
                    getattr(request, "id", None),
                    reply=not isinstance(request, _UNANSWERED),  # §5.1: ack and rr never are
                )
            self._dispatch(info, request, now, wall_ms)
        except ControlError as exc:
            self.out.reject(exc.code, device, "refused control from %s: %s", device, exc)
            if exc.reply:
                self.out.reply(device, "error", re=exc.re_id, code=exc.code, message=exc.message)

    def _rate_limited(
        self, device: str, payload: bytes, now: float, request: Request | None
    ) -> None:
        """A control message over the device's budget: counted, logged once per device, and
        answered with `error` `rate_limited` at most once per RATE_LIMITED_REPLY_INTERVAL_S (a
        reply to every refused message would be a flood of its own); only then is the message
        parsed, for its id. `ack` and `rr` are never answered (§5.1)."""
        self.out.reject(
            "rate_limited",
            device,
            "control messages from %s over its budget (%g/s, burst %d): refused and counted",
            device,
            limits.CONTROL_RATE,
            limits.CONTROL_BURST,
        )
        if not self.budget.note(device, now, limits.RATE_LIMITED_REPLY_INTERVAL_S):
            return
        re_id: str | None = None
        if request is None:
            try:
                request = parse_request(payload)
            except ControlError as exc:
                if not exc.reply:
                    return
                re_id = exc.re_id
        if request is not None:
            if isinstance(request, _UNANSWERED):
                return
            re_id = request.id
        self.out.reply(
            device,
            "error",
            re=re_id,
            code="rate_limited",
            message=f"over the control budget of {limits.CONTROL_RATE:g} messages/s "
            f"(burst {limits.CONTROL_BURST}); refused, not handled",
        )

    def _dispatch(self, info: DeviceInfo, request: Request, now: float, wall_ms: int) -> None:
        if isinstance(request, FloorRequest):
            self._floor_request(info, request, now, wall_ms)
        elif isinstance(request, FloorRelease):
            self._floor_release(info, request, now, wall_ms)
        elif isinstance(request, Affiliate):
            self.affiliation.affiliate(info, request, wall_ms)
        elif isinstance(request, Sos):
            self.alarms.handle(info, request, wall_ms)
        elif isinstance(request, StatusMessage):
            data: dict[str, Any] = {"code": request.code, "text": request.text}
            if request.incident is not None:
                data["incident"] = request.incident
            self.out.event("status_msg", info.id, wall_ms, data)
            self.out.reply(info.id, "status_ack", re=request.id)
        elif isinstance(request, IncidentReport):
            self.out.event(
                "report", info.id, wall_ms,
                {"id": request.id, "category": request.category, "text": request.text,
                 "lat": request.lat, "lon": request.lon, "voice": request.voice},
            )  # fmt: skip
            self.out.reply(info.id, "report_ack", re=request.id)
        elif isinstance(request, CommandAck):
            self.command_log.ack(info.id, request, wall_ms)
        elif isinstance(request, ReceiverReport):
            self.counters.receiver_reports += 1
            self.reports.report(info.id, request, now)

    # ---- floor ------------------------------------------------------------------------------

    def _tg_refusal(self, info: DeviceInfo, tg: str) -> str | None:
        """Why this device may not take this talkgroup's floor (a §5.2 deny reason), if so."""
        if tg not in self.floors.talkgroups:
            return "unknown_talkgroup"
        if tg not in info.talkgroups:
            return "not_member"
        return None

    def _deny(self, info: DeviceInfo, request: FloorRequest, reason: str) -> None:
        self.counters.floor["deny"] += 1
        self.out.reply(
            info.id, "floor_deny", re=request.id, tg=request.tg, call=request.call, reason=reason
        )

    def _request_refusal(self, info: DeviceInfo, request: FloorRequest) -> str | None:
        """Why this floor request is denied (a §5.2 deny reason), if it is."""
        if info.id in self.command_log.stunned:
            return "stunned"
        if request.call is not None:
            peer = self.directory.get(request.call)
            if peer is None or not peer.enabled or peer.id == info.id:
                return "no_such_device"
            if self.roster.get(peer.id).state != "online":
                return "peer_offline"
        if request.tg is not None:
            return self._tg_refusal(info, request.tg)
        return None

    def _floor_request(
        self, info: DeviceInfo, request: FloorRequest, now: float, wall_ms: int
    ) -> None:
        refusal = self._request_refusal(info, request)
        if refusal is not None:
            self._deny(info, request, refusal)
            return
        if request.tg is not None:
            key = request.tg
            self.affiliation.join(info.id, request.tg)
        else:
            assert request.call is not None
            key = self.calls.open(info.id, request.call)
        priority = info.priority
        if request.emergency or info.id in self.alarms:
            priority = Priority.EMERGENCY
        self._emit(key, self.floors[key].request(info.id, priority, now, request.id), wall_ms)

    def _floor_release(
        self, info: DeviceInfo, request: FloorRelease, now: float, wall_ms: int
    ) -> None:
        if request.tg is not None:
            key = None if self._tg_refusal(info, request.tg) else request.tg
        else:
            assert request.call is not None
            key = self.calls.find(info.id, request.call)
        if key is None:  # nothing held or queued there: releasing it is already true
            self.out.reply(
                info.id, "floor_released", re=request.id, tg=request.tg, call=request.call
            )
            return
        self._emit(key, self.floors[key].release(info.id, now, request.id), wall_ms)

    def _emit(self, key: str, floor_events: Iterable[FloorEvent], wall_ms: int) -> None:
        """Announce floor events (messages and stored events), then set the next wake-up."""
        self._announcer.announce(key, floor_events, wall_ms)
        self._schedule(key)

    def _schedule(self, key: str) -> None:
        """Set the floor's next wake-up: its next timer, or when an idle private call is due
        to be forgotten. An earlier pending wake-up stays; it re-checks when it fires."""
        floor = self.floors.get(key)
        if floor is None:
            return
        when = floor.next_deadline()
        if when is None and self.floors.is_call(key):
            when = self.calls.forget_at(key)
        if when is not None:
            self.timers.schedule(key, when)

    def tick(self, now: float, wall_ms: int) -> None:
        """Fire due floor timers (max burst, end of media, grace, queue timeouts) and forget
        private calls idle for call_idle_s."""
        if self.reports.waiting:
            self.reports.flush(now)
        if self.command_log.pending:
            self.command_log.tick(wall_ms)
        for key in self.timers.due(now):
            floor = self.floors.get(key)
            if floor is None:
                continue
            deadline = floor.next_deadline()
            if deadline is not None and deadline <= now:
                self._emit(key, floor.tick(now), wall_ms)  # schedules the next wake-up
                continue
            if deadline is None and self.calls.idle_for_long(key, now):
                self.calls.retire(key)
                continue
            self._schedule(key)

    def revoke(self, key: str, now: float, wall_ms: int) -> None:
        """A dispatcher's administrative revoke."""
        self._emit(key, self.floors[key].revoke(now), wall_ms)

    # ---- commands -------------------------------------------------------------------------

    def is_reachable(self, device: str) -> bool:
        """Whether a command to the device goes out now (online and enabled) or is queued."""
        info = self.directory.get(device)
        return info is not None and info.enabled and self.roster.get(device).state == "online"

    def send_command(
        self,
        device: str,
        cmd: str,
        now: float,
        wall_ms: int,
        issued_by: str = "gateway",
        **fields: Any,
    ) -> str:
        """Send a `command` to a terminal, or queue it while the terminal is offline (it goes
        out when the terminal's status says online); returns its id for matching the `ack`."""
        command_id, payload = self.command_log.issue(
            device, cmd, fields, wall_ms, online=self.is_reachable(device), by=issued_by
        )
        if cmd == "stun":
            self._silence(device, now, wall_ms)
        if payload is not None:
            self.out.publish(topics.ctrl_down(device), payload)
        return command_id

    def _silence(self, device: str, now: float, wall_ms: int) -> None:
        """A stunned device stops talking at once (§5.4, §6): an administrative revoke (grace
        0) of every floor it holds, and its queued requests leave their queues."""
        for key, floor in self.floors.holding(device, now):
            held = floor.holder == device
            self._emit(key, floor.revoke(now) if held else floor.remove(device, now), wall_ms)
