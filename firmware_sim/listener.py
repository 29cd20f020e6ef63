"""The receive side of the simulated firmware: which talkgroups are active, what is heard.

Owned by :class:`firmware_sim.firmware.Firmware`: it tracks the talkgroups someone else is
talking on, feeds every received frame to the :class:`ReceiverMeter`, and — when the terminal is
a decoding probe — plays the scan list's chosen call through a :class:`VoiceProbe` and sends the
receiver reports (`rr`) its voice session says are due (once a second, and at a burst's END).
"""

from __future__ import annotations

import time

from codec.frame import HEADER, HEADER_SIZE, RESERVED_FLAGS
from devices.session import FrameIn, Outgoing, ScanList, TerminalSession
from devices.voice import VoiceSession
from firmware_sim.model import FirmwareConfig, FirmwareStats
from firmware_sim.reception import VoiceProbe

INF = float("inf")


class Listener:
    def __init__(
        self,
        config: FirmwareConfig,
        scan: ScanList,
        stats: FirmwareStats,
        session: TerminalSession,
        wall_offset: float,
        voice: VoiceSession | None = None,
    ) -> None:
        """`voice`: the terminal's voice session (shared with its live talker), if a probe."""
        self.config = config
        self.scan = scan
        self.stats = stats
        self.session = session
        self.wall_offset = wall_offset
        self.probe = VoiceProbe(voice=voice) if config.probe else None
        if self.probe is not None:
            stats.mouth_to_ear = self.probe.mouth_to_ear
        self.active: dict[str, float] = {}  # talkgroups someone else talks on -> last activity
        self.reports: list[Outgoing] = []  # `rr` due, for the firmware to send

    def wakeups(self) -> list[float]:
        times: list[float] = []
        if self.probe is not None and self.probe.active:
            times.append(self.probe.next_pull)
        if self.active:
            times.append(min(self.active.values()) + self.config.receive_idle_s)
        sweep = self.stats.meter.next_sweep
        if sweep is not None:
            times.append(sweep - self.wall_offset)
        return times

    def taken(self, key: str, burst: int | None, now: float) -> bool:
        """Someone else took the floor on `key`; True if that is news."""
        if burst is not None:
            self.stats.meter.taken(key, burst)
        fresh = key not in self.active
        self.active[key] = now
        return fresh

    def idle(self, key: str, now: float) -> bool:
        """The floor on `key` went idle; True if we were listening there."""
        self.stats.meter.ended(key, now + self.wall_offset)
        self.scan.ended(key)
        return self.active.pop(key, None) is not None

    def lost_all(self, now: float) -> None:
        for key in list(self.active):
            self.stats.meter.ended(key, now + self.wall_offset)
        self.active.clear()
        self.scan.playing = None

    def frame(self, incoming: FrameIn, now: float) -> bool:
        """A voice frame arrived; True if it starts something that needs the clock (a newly
        active talkgroup, the probe's playout)."""
        key, frame = incoming.key, incoming.frame
        self.stats.meter.frame(
            key,
            incoming.burst,
            incoming.seq,
            incoming.timestamp,
            incoming.end,
            incoming.audio,
            now + self.wall_offset,
        )
        active = self.active
        fresh = key not in active
        active[key] = now
        probe = self.probe
        if probe is not None and frame is not None and self.scan.offer(key):
            if not probe.active:
                fresh = True  # the playout clock starts: wake up for it
            report = probe.receive(frame, now, key)
            if report is not None and not self.session.stunned:
                self.reports.append(self.session.report(report))
                self.stats.reports_sent += 1
        return fresh

    def fast_frame(self, tg: str, payload: bytes, start: int = 0, stop: int | None = None) -> bool:
        """The hot path for a frame (payload[start:stop]) on a talkgroup already being heard
        (devices.aio_client frame_tap): the same accounting as frame(), without building the
        message objects.
        Returns False (the normal path takes over) for anything that is not that case."""
        active = self.active
        if self.probe is not None or tg not in active or self.session.stunned:
            return False
        if (len(payload) if stop is None else stop) - start < HEADER_SIZE:
            return False
        version, flags, burst, seq, timestamp, _units, count = HEADER.unpack_from(payload, start)
        if version != 1 or flags & RESERVED_FLAGS:
            return False
        view = self.session.floors.get(tg)
        if view is not None and view.is_own(burst):
            self.session.counters.own_echo += 1
            return True
        now = time.monotonic()
        active[tg] = now
        self.stats.meter.frame(tg, burst, seq, timestamp, bool(flags & 0x02), count > 0,
                               now + self.wall_offset)  # fmt: skip
        return True

    def tick(self, now: float, connected: bool) -> tuple[list[Outgoing], bool]:
        """Play out, report, expire quiet talkgroups; (messages to send, state may change)."""
        out: list[Outgoing] = []
        wall = now + self.wall_offset
        probe = self.probe
        if probe is not None and probe.active and now >= probe.next_pull:
            probe.pull(now, wall)
        if self.reports:
            if connected:
                out += self.reports
            self.reports = []
        changed = False
        for key, last in list(self.active.items()):
            if now - last >= self.config.receive_idle_s:
                self.idle(key, now)
                changed = True
        self.stats.meter.sweep(wall)
        return out, changed
