"""The receive side of the simulated firmware: which talkgroups are active, what is heard.

Owned by :class:`firmware_sim.firmware.Firmware`: it tracks the talkgroups someone else is
talking on, feeds every received frame to the :class:`ReceiverMeter`, and — when the terminal is
a decoding probe — plays the scan list's chosen call through a :class:`VoiceProbe` and sends a
receiver report (`rr`) about once a second.
"""

from __future__ import annotations

import time

from codec.frame import HEADER, HEADER_SIZE, RESERVED_FLAGS
from devices.session import FrameIn, Outgoing, ScanList, TerminalSession, key_fields
from devices.values import report_message
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
    ) -> None:
        self.config = config
        self.scan = scan
        self.stats = stats
        self.session = session
        self.wall_offset = wall_offset
        self.probe = VoiceProbe() if config.probe else None
        if self.probe is not None:
            stats.mouth_to_ear = self.probe.mouth_to_ear
        self.active: dict[str, float] = {}  # talkgroups someone else talks on -> last activity
        self._next_report = INF

    def wakeups(self) -> list[float]:
        times: list[float] = []
        if self.probe is not None and self.probe.active:
            times += [self.probe.next_pull, self._next_report]
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
                self._next_report = now + self.config.report_interval_s
                fresh = True  # the playout clock starts: wake up for it
            probe.receive(frame, now)
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
        if view is not None and view.own_burst == burst:
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
        if probe is not None and probe.active and now >= self._next_report:
            self._next_report = now + self.config.report_interval_s
            key = self.scan.playing
            if key is not None and connected:
                report = probe.player.receiver_report(now, **key_fields(key))
                if report is not None:
                    out.append(self.session.report(report_message(report)))
                    self.stats.reports_sent += 1
        changed = False
        for key, last in list(self.active.items()):
            if now - last >= self.config.receive_idle_s:
                self.idle(key, now)
                changed = True
        self.stats.meter.sweep(wall)
        return out, changed
