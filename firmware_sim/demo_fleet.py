"""A few simulated terminals for `xixin up --demo`: they patrol two grids and take turns talking
(real Opus speech from espeak-ng), so a newcomer sees grants and relayed frames within seconds.

It is the full firmware simulator (firmware_sim.firmware on devices.aio_client) with a demo
cast, running on its own thread and event loop next to the gateway.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from dataclasses import dataclass

from devices.aio_client import AsyncTerminalClient
from firmware_sim.errors import AudioError
from firmware_sim.firmware import Firmware
from firmware_sim.gps import GpsConfig, Route
from firmware_sim.model import FirmwareConfig, TalkPattern, TerminalProfile
from firmware_sim.terminal import Scheduler, SimTerminal
from firmware_sim.voice import BurstLengths, SpeechReel, phrase_reel, tone_reel
from protocol.org import default_org

log = logging.getLogger(__name__)

# (id, unit, role, name): two grid talkgroups with officers and a guard, and a centre dispatcher.
DEMO_DEVICES = [
    ("T001", "grid-01", "officer", "民警 陈 (Chen)"),
    ("T002", "grid-01", "officer", "民警 沈 (Shen)"),
    ("T003", "grid-01", "guard", "溪心卫士 王 (Wang)"),
    ("T101", "grid-07", "officer", "民警 李 (Li)"),
    ("T102", "grid-07", "guard", "溪心卫士 张 (Zhang)"),
    ("D001", "centre", "dispatcher", "中心调度 (Centre dispatch)"),
]


@dataclass(slots=True)
class DemoStats:
    grants: int = 0
    denials: int = 0
    frames_sent: int = 0
    frames_heard: int = 0


def _reel() -> SpeechReel:
    try:
        return phrase_reel()
    except AudioError as exc:
        log.warning("demo terminals talk with a tone instead of speech: %s", exc)
        return tone_reel()


class DemoFleet:
    """The demo terminals on their own thread; start() and stop() are called from anywhere."""

    def __init__(self, host: str, port: int, secrets: dict[str, str], seed: int = 7) -> None:
        self.host, self.port, self.secrets = host, port, secrets
        self.rng = random.Random(seed)
        self.terminals: list[SimTerminal] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="demo-fleet", daemon=True)
        self._ready = threading.Event()

    @property
    def stats(self) -> DemoStats:
        stats = DemoStats()
        for terminal in self.terminals:
            s = terminal.firmware.stats
            stats.grants += s.grants
            stats.denials += sum(s.denied.values())
            stats.frames_sent += s.frames_sent
            stats.frames_heard += s.meter.totals.frames_received
        return stats

    def _build(self, scheduler: Scheduler) -> None:
        org, reel = default_org(), _reel()
        wall_offset = time.time() - time.monotonic()
        probes = {"T003", "T102", "D001"}
        for device_id, unit, role, _name in DEMO_DEVICES:
            talkgroups = org.default_affiliation(unit, role)
            dispatcher = role == "dispatcher"
            config = FirmwareConfig(
                gps=GpsConfig(moving_interval_s=5.0),
                talk=TalkPattern() if dispatcher else TalkPattern("continuous", gap_s=(0.5, 4.0)),
                bursts=BurstLengths(mean_s=3.0, low_s=1.5, high_s=6.0),
                probe=device_id in probes,
                wait_in_queue=False,  # the demo does not wait in line
            )
            rng = random.Random(self.rng.random())
            client = AsyncTerminalClient(
                device_id,
                self.secrets.get(device_id),
                self.host,
                self.port,
                decode_frames=device_id in probes,
            )
            grid = org.grids.get(unit)
            firmware = Firmware(
                TerminalProfile(device_id, unit, role, talkgroups, talkgroups[0]),
                config,
                client.session,
                now=time.monotonic(),
                wall_offset=wall_offset,
                rng=rng,
                route=Route.from_grid(grid) if grid is not None else None,
                reel=reel,
            )
            self.terminals.append(SimTerminal(firmware, client, scheduler))

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            scheduler = Scheduler()
            scheduler.start()
            try:
                self._build(scheduler)
                for terminal in self.terminals:
                    terminal.power_on()
            finally:
                self._ready.set()
            await self._stop.wait()
            await asyncio.gather(*(t.shutdown() for t in self.terminals), return_exceptions=True)
            scheduler.stop()

        try:
            asyncio.run(main())
        except Exception:
            log.exception("the demo fleet stopped")
            self._ready.set()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(30)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
