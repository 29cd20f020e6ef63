"""Simulated terminal firmware: a sans-I/O state machine with an injected clock.

States: boot → connecting → idle / transmitting / receiving / emergency / stunned / offline.
The firmware is driven by the simulation time ``now`` (monotonic seconds; wall clock is
``now + wall_offset``): the I/O shell calls :meth:`Firmware.tick` at :meth:`next_wakeup`, feeds it
what the terminal client classified (it implements :class:`devices.aio_client.TerminalHandler`),
and carries out the :attr:`outbox` effects (:mod:`firmware_sim.model`). Tests drive it by hand.

What the firmware does by itself: takes GPS fixes and queues beacons (interval adapts to
movement), drains the battery and raises the low-battery alarm, presses PTT per its talk pattern
(bursts of real speech at real-time pace), listens (frame accounting; optionally decoding),
answers dispatcher commands, loses its connection per its outage plan.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from codec.frame import VoiceFrame
from devices.session import (
    Command,
    Control,
    FloorNews,
    FrameIn,
    Incoming,
    PendingRequest,
    Reply,
    ScanList,
    TerminalSession,
    body_key,
    key_fields,
)
from devices.voice import VoiceSession
from firmware_sim.battery import Battery
from firmware_sim.gateway_commands import answer_command
from firmware_sim.gps import GpsModel, Route
from firmware_sim.impairment import OutagePlan
from firmware_sim.listener import Listener
from firmware_sim.model import (
    CONNECTED_STATES,
    Affiliate,
    Connect,
    Drop,
    Effect,
    FirmwareConfig,
    FirmwareStats,
    PowerOff,
    Ptt,
    Send,
    SendBeacon,
    SendFrame,
    SendRequest,
    State,
    TerminalProfile,
)
from firmware_sim.reception import PROBE_JITTER
from firmware_sim.responder import IncidentResponder
from firmware_sim.voice import SPEECH_RATE, BurstSender, LiveBurstSender, SpeechReel

log = logging.getLogger(__name__)
INF = float("inf")
BATTERY_CHECK_S = 30.0
_ACTIVITY = {
    State.TRANSMITTING: "transmit",
    State.RECEIVING: "receive",
    State.OFFLINE: "offline",
}


class Firmware:
    def __init__(
        self,
        profile: TerminalProfile,
        config: FirmwareConfig,
        session: TerminalSession,
        *,
        now: float,
        wall_offset: float,
        rng: random.Random,
        route: Route | None = None,
        reel: SpeechReel | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.profile = profile
        self.config = config
        self.session = session
        self.wall_offset = wall_offset
        self.rng = rng
        self.log = logger or log
        self.state = State.BOOT
        self.outbox: list[Effect] = []
        self.needs_schedule = False  # something may have moved next_wakeup() earlier
        self.stats = FirmwareStats()
        self.connected = False
        self.powered_off = False
        self.sos_active = False
        self.last_position: tuple[float, float] | None = None  # sent with an SOS (§5.1)
        self.affiliated: tuple[str, ...] = ()
        self.assignment: dict[str, Any] | None = None
        self.responder = IncidentResponder(config.responder, rng)
        self.gps = GpsModel(route, config.gps, rng, now) if route and config.beacons else None
        self.battery = Battery(config.battery, now)
        self.outages = OutagePlan(config.impairment, rng, now)
        scan = ScanList(profile.home, [t for t in profile.talkgroups if t != profile.home])
        # One voice session per decoding or live-talking terminal: it plays and reports what
        # is heard, and protects what is said as the forwarded reports ask (§9).
        self.voice = (
            VoiceSession(
                SPEECH_RATE,
                packets_per_message=config.packets_per_message,
                jitter=PROBE_JITTER if config.probe else None,
                report_interval_s=config.report_interval_s,
                scan=scan,
                logger=self.log,
            )
            if config.probe or config.live_voice
            else None
        )
        self.listener = Listener(config, scan, self.stats, session, wall_offset, self.voice)
        self.sender: BurstSender | LiveBurstSender | None = None
        if reel is not None and config.live_voice:
            assert self.voice is not None
            self.sender = LiveBurstSender(reel, self.voice)
        elif reel is not None:
            self.sender = BurstSender(reel, config.packets_per_message)
        self.ptt: Ptt | None = None
        self.beacon_interval: float | None = None  # a `config` command overrides the GPS's
        self._next_beacon = INF  # the GPS starts with the power
        self._next_press = self._draw_press(now)
        self._next_battery = now + BATTERY_CHECK_S
        self._boot_done = INF
        self._offline_until = INF

    # ---- clock helpers ---------------------------------------------------------------------

    def wall(self, now: float) -> float:
        return now + self.wall_offset

    def wall_ms(self, now: float) -> int:
        return int((now + self.wall_offset) * 1000)

    def _draw_press(self, now: float) -> float:
        talk = self.config.talk
        if talk.mode == "poisson":
            return now + self.rng.expovariate(talk.rate_per_h / 3600.0)
        if talk.mode == "continuous":
            return now + self.rng.uniform(*talk.gap_s)
        return INF

    def next_wakeup(self) -> float:
        times = [
            self._next_beacon,
            self._next_press,
            self._next_battery,
            self._boot_done,
            self._offline_until,
            self.outages.next_at if self.connected else INF,
            self.responder.next_at(),
        ]
        ptt = self.ptt
        if ptt is not None and ptt.phase == "talking" and self.sender is not None:
            times.append(min(self.sender.next_due, ptt.stop_at))
        times += self.listener.wakeups()
        return min(times)

    # ---- state ----------------------------------------------------------------------------

    def _enter(self, state: State, now: float) -> None:
        if state is self.state:
            return
        self.stats.transitions.append((now, self.state.value, state.value))
        if len(self.stats.transitions) > 200:
            del self.stats.transitions[:100]
        self.state = state
        self.battery.set_activity(_ACTIVITY.get(state, "idle"), now)

    def settle(self, now: float) -> None:
        """Enter the resting state that fits the current facts."""
        if self.powered_off or (not self.connected and self.state is not State.CONNECTING):
            self._enter(State.OFFLINE, now)
        elif not self.connected:
            return
        elif self.session.stunned:
            self._enter(State.STUNNED, now)
        elif self.ptt is not None and self.ptt.phase == "talking":
            self._enter(State.TRANSMITTING, now)
        elif self.sos_active:
            self._enter(State.EMERGENCY, now)
        elif self.listener.active:
            self._enter(State.RECEIVING, now)
        else:
            self._enter(State.IDLE, now)

    def power_on(self, now: float) -> None:
        self.powered_off = False
        if self.gps is not None:
            # Spread the fleet's beacons over the interval instead of all at once.
            spread = self.rng.uniform(0.0, self.config.gps.moving_interval_s)
            self._next_beacon = now + self.config.boot_s + spread
        if self.config.boot_s > 0:
            self._boot_done = now + self.config.boot_s
        else:
            self._connect(now)

    def _connect(self, now: float) -> None:
        self._boot_done = INF
        self._offline_until = INF
        self.outbox.append(Connect())
        self._enter(State.CONNECTING, now)

    def go_offline(self, now: float, seconds: float) -> None:
        """Lose coverage for `seconds` (no DISCONNECT), then reconnect."""
        if self.powered_off:
            return
        self.stats.outages += 1
        self.drop_talk(now)
        self.outbox.append(Drop())
        self.connected = False
        self._offline_until = now + seconds
        self._lost_everything(now)
        self._enter(State.OFFLINE, now)

    def power_off(self, now: float) -> None:
        self.drop_talk(now)
        self.outbox.append(PowerOff())
        self.powered_off = True
        self.connected = False
        self._next_press = self._next_beacon = self._offline_until = INF
        self._lost_everything(now)
        self._enter(State.OFFLINE, now)

    def _lost_everything(self, now: float) -> None:
        self.listener.lost_all(now)

    # ---- TerminalHandler -------------------------------------------------------------------

    def on_connected(self, now: float) -> None:
        first = not self.affiliated
        self.connected = True
        if first:
            self.outbox.append(Affiliate(self.profile.talkgroups))
        if self.config.talk.mode == "continuous" and self.ptt is None and self._next_press == INF:
            self._next_press = self._draw_press(now)  # a burst cut by the outage: go on talking
        self.settle(now)

    def on_disconnected(self, now: float) -> None:
        if not self.connected:
            return
        self.connected = False
        self.drop_talk(now)
        self._lost_everything(now)
        self._enter(State.OFFLINE, now)

    def on_expired(self, request: PendingRequest, now: float) -> None:
        ptt = self.ptt
        if request.type == "floor_request" and ptt is not None and ptt.request_id == request.id:
            self.stats.no_reply += 1
            self.ptt = None
            self._after_talk(now)

    def on_incoming(self, incoming: Incoming, now: float) -> None:
        if isinstance(incoming, FrameIn):
            self._frame(incoming, now)
        elif isinstance(incoming, Reply):
            self._reply(incoming, now)
        elif isinstance(incoming, Command):
            answer_command(self, incoming, now)
        elif (
            isinstance(incoming, Control)
            and self.voice is not None
            and self.voice.on_forwarded(incoming.body, now)
        ):
            self.stats.reports_applied += 1
        elif isinstance(incoming, FloorNews | Control):
            self._floor_message(incoming.body, now)

    # ---- talking --------------------------------------------------------------------------

    def press(
        self,
        now: float,
        key: str | None = None,
        hold_s: float | None = None,
        emergency: bool = False,
    ) -> bool:
        """The user presses PTT (on the home talkgroup unless `key`); False if it cannot."""
        self.stats.presses += 1
        if self.ptt is not None or self.state not in CONNECTED_STATES or self.session.stunned:
            self.stats.blocked_presses += 1
            return False
        target = key or self.profile.home
        hold = hold_s if hold_s is not None else self.config.bursts.draw(self.rng)
        pending, message = self.session.request(
            "floor_request",
            now,
            emergency=(emergency or self.sos_active) or None,
            **key_fields(target),
        )
        self.ptt = Ptt(target, now, hold, emergency or self.sos_active, request_id=pending.id)
        self.outbox.append(SendRequest(pending, message))
        return True

    def release(self, now: float) -> None:
        """The user lets go of PTT (also withdraws a queued request)."""
        ptt = self.ptt
        if ptt is None:
            return
        if ptt.phase == "talking" and self.sender is not None:
            end = self.sender.stop(now)
            if end is not None:
                self._send_frame(end, ptt.key)
            self.stats.talk_s += now - ptt.talk_started
        self.ptt = None
        if self.connected:
            pending, message = self.session.floor_release(now, **key_fields(ptt.key))
            self.outbox.append(SendRequest(pending, message))
        self._after_talk(now)

    def _send_frame(self, frame: VoiceFrame, key: str) -> None:
        self.outbox.append(SendFrame(frame, key))
        stats = self.stats
        stats.frames_sent += 1
        if frame.redundant is not None or frame.fec:
            stats.frames_protected += 1
        ident = (key, frame.burst)
        stats.sent_bursts[ident] = stats.sent_bursts.get(ident, 0) + 1
        if len(stats.sent_bursts) > 2000:
            del stats.sent_bursts[next(iter(stats.sent_bursts))]

    def drop_talk(self, now: float) -> None:
        """Stop talking without a release (the connection is gone or we were stunned)."""
        if self.ptt is not None and self.ptt.phase == "talking" and self.sender is not None:
            self.sender.stop(now)
            self.stats.talk_s += now - self.ptt.talk_started
        self.ptt = None

    def _after_talk(self, now: float) -> None:
        if self.config.talk.mode == "continuous":
            self._next_press = self._draw_press(now)
        self.settle(now)

    def _granted(self, body: dict[str, Any], now: float, immediate: bool) -> None:
        ptt = self.ptt
        burst = body.get("burst")
        if ptt is None or not isinstance(burst, int):
            return
        if ptt.phase == "talking":
            return  # the answer to a retry: same burst
        wait_ms = (now - ptt.pressed_at) * 1000.0
        (self.stats.access_ms if immediate else self.stats.queue_wait_ms).add(wait_ms)
        self.stats.grants += 1
        ptt.phase = "talking"
        ptt.talk_started = now
        max_ms = body.get("max_ms")
        hold = ptt.hold_s
        if isinstance(max_ms, int) and max_ms > 0:
            hold = min(hold, max_ms / 1000.0 - 0.2)
        if self.sender is not None:
            self.sender.start(burst, now, self.wall(now), max(0.02, hold), self.rng)
            self.stats.bursts_sent += 1
        else:
            ptt.stop_at = now + hold
        self._enter(State.TRANSMITTING, now)

    def _talk(self, now: float) -> None:
        ptt = self.ptt
        if ptt is None or ptt.phase != "talking":
            return
        if self.sender is not None:
            for frame in self.sender.due(now):
                self._send_frame(frame, ptt.key)
            if self.sender.ended:
                self.release(now)
                return
        if now >= ptt.stop_at:
            self.release(now)

    # ---- control messages -------------------------------------------------------------------

    def _reply(self, reply: Reply, now: float) -> None:
        body, kind = reply.body, reply.body.get("type")
        if reply.request.type == "affiliate" and kind == "affiliated":
            self.affiliated = tuple(t for t in body.get("tgs", []) if isinstance(t, str))
            self.stats.meter.joined(self.wall(now))
            return
        ptt = self.ptt
        if reply.request.type != "floor_request" or ptt is None:
            return
        if ptt.request_id != reply.request.id:
            return
        if kind == "floor_granted":
            self._granted(body, now, immediate=True)
        elif kind == "floor_queued":
            self._queued(now)
        elif kind in ("floor_deny", "error"):
            self._denied(str(body.get("reason") or body.get("code")), now)

    def _queued(self, now: float) -> None:
        ptt = self.ptt
        assert ptt is not None
        if ptt.phase == "requesting":
            self.stats.queued += 1
            ptt.phase = "queued"
        if not self.config.wait_in_queue:
            self.release(now)

    def _denied(self, reason: str, now: float) -> None:
        self.stats.bump(self.stats.denied, reason)
        self.ptt = None
        self._after_talk(now)

    def _floor_message(self, body: dict[str, Any], now: float) -> None:
        kind, key = body.get("type"), body_key(body)
        if key is None:
            return
        ptt = self.ptt if self.ptt is not None and self.ptt.key == key else None
        if kind == "floor_taken":
            if body.get("by") != self.profile.device_id:
                burst = body.get("burst")
                if self.listener.taken(key, burst if isinstance(burst, int) else None, now):
                    self.settle(now)
        elif kind == "floor_idle":
            if self.listener.idle(key, now):
                self.settle(now)
        elif ptt is None:
            return
        elif kind == "floor_granted" and body.get("re") == ptt.request_id:
            self._granted(body, now, immediate=False)
        elif kind == "floor_queued" and ptt.phase == "requesting":
            self._queued(now)
        elif kind == "floor_deny" and ptt.phase != "talking":
            self._denied(str(body.get("reason")), now)
        elif kind == "floor_revoke" and ptt.phase == "talking":
            self._revoked(body, now)

    def _revoked(self, body: dict[str, Any], now: float) -> None:
        ptt = self.ptt
        assert ptt is not None
        if self.sender is not None and body.get("burst") != self.sender.burst:
            return
        self.stats.bump(self.stats.revoked, str(body.get("reason")))
        grace = body.get("grace_ms")
        if isinstance(grace, int) and grace > 0:
            # Finish the sentence: stop a little before the grace runs out.
            ptt.stop_at = min(ptt.stop_at, now + max(0.0, grace / 1000.0 - 0.5))
        else:
            self.release(now)

    def report_incident(self, now: float, category: str, text: str, voice: bool = False) -> None:
        """The officer reports an incident where it is (protocol §5.6)."""
        if not self.connected:
            return
        lat = lon = None
        if self.gps is not None:
            lon, lat = self.gps.here(now)
        pending, message = self.session.incident_report(now, category, text, lat, lon, voice)
        self.outbox.append(SendRequest(pending, message))
        self.settle(now)

    def _answer(self, now: float) -> None:
        for incident, code in self.responder.due(now):
            self.stats.bump(self.stats.incident_answers, code)
            if self.connected:
                pending, message = self.session.status_msg(now, code, None, incident)
                self.outbox.append(SendRequest(pending, message))

    def set_sos(self, now: float, active: bool) -> None:
        """The emergency button: raise (and talk on the home talkgroup) or cancel the SOS."""
        self.sos_active = active
        if self.connected:
            where = self.last_position
            pending, message = self.session.sos(
                now, active, *(where if where is not None else (None, None))
            )
            self.outbox.append(SendRequest(pending, message))
        if active and self.ptt is None:
            self.press(now, hold_s=self.config.emergency_talk_s, emergency=True)
        self.settle(now)

    # ---- receiving --------------------------------------------------------------------------

    def _frame(self, incoming: FrameIn, now: float) -> None:
        if self.session.stunned or not self.connected:
            return
        if self.listener.frame(incoming, now):
            self.needs_schedule = True
            self.settle(now)
        if self.listener.reports:
            self.outbox.extend(Send(report) for report in self.listener.reports)
            self.listener.reports = []

    # ---- the clock ---------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Do everything due at `now`."""
        if now >= self._boot_done:
            self._connect(now)
        if now >= self._offline_until and not self.powered_off:
            self._connect(now)
        if now >= self._next_battery:
            self._next_battery = now + BATTERY_CHECK_S
            self._battery(now)
        self._talk(now)
        reports, changed = self.listener.tick(now, self.connected)
        self.outbox.extend(Send(report) for report in reports)
        if changed:
            self.settle(now)
        if now >= self.responder.next_at():
            self._answer(now)
        if now >= self._next_beacon:
            self._beacon(now)
        if now >= self._next_press:
            self._next_press = INF
            if self.ptt is not None or self.state not in CONNECTED_STATES or self.session.stunned:
                self._next_press = now + self.rng.uniform(1.0, 5.0)  # busy: try again later
            else:
                self.press(now)
                if self.config.talk.mode == "poisson":
                    self._next_press = self._draw_press(now)
        if self.connected and now >= self.outages.next_at:
            length = self.outages.due(now)
            if length is not None:
                self.go_offline(now, length)

    def _battery(self, now: float) -> None:
        if self.battery.take_alarm(now):
            self.stats.low_battery_alarms += 1
            if self.connected:
                pending, message = self.session.status_msg(
                    now, "low_battery", f"battery {self.battery.percent}%"
                )
                self.outbox.append(SendRequest(pending, message))
        if self.battery.empty and not self.powered_off:
            self.power_off(now)

    def _beacon(self, now: float) -> None:
        assert self.gps is not None
        self.battery.update(now)
        away = self.responder.position(now)
        detour = None if away is None else (away, self.responder.moving(now))
        fix = self.gps.fix(now, self.wall_ms(now), self.battery.percent, detour)
        self.stats.fixes += 1
        if fix.bad is None:
            self.last_position = (fix.beacon.lat, fix.beacon.lon)
        if fix.bad is not None:
            self.stats.bump(self.stats.bad_fixes, fix.bad)
        self.outbox.append(SendBeacon(fix.beacon))
        interval = self.beacon_interval or self.gps.next_interval(now)
        self._next_beacon = now + interval
