"""A fleet of simulated terminals in one process: planning, the worker, its report.

:func:`plan_fleet` spreads N terminals over an organisation's grids; :func:`run_worker` runs a
share of them on one event loop (one MQTT connection each, one scheduler for all) for a given
time and returns a JSON-able report. :mod:`firmware_sim.fleet_run` starts workers in several
processes and merges their reports.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import random
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from devices.aio_client import AsyncTerminalClient
from devices.beacons import BeaconJournal, BeaconQueue
from devices.tls import client_tls_context
from firmware_sim.deployment import DeviceSpec, resolve_org
from firmware_sim.errors import SimError
from firmware_sim.firmware import Firmware
from firmware_sim.gps import GpsConfig, Route, load_geojson_routes
from firmware_sim.impairment import Impairment, ImpairmentConfig
from firmware_sim.model import FirmwareConfig, TalkPattern, TerminalProfile
from firmware_sim.reception import Histogram
from firmware_sim.terminal import LoopLagMonitor, Scheduler, SimTerminal
from firmware_sim.voice import phrase_reel, wav_reel
from protocol.org import Organisation
from transport.loop import freeze_startup_heap, run_event_loop

log = logging.getLogger(__name__)
ProgressFn = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class FleetOptions:
    """How the fleet behaves (picklable: it is sent to worker processes)."""

    duration_s: float = 60.0
    beacon_interval_s: float = 5.0
    adaptive_beacons: bool = True
    talkers_pct: float = 5.0  # terminals that talk again and again (one burst after another)
    talk_rate_per_h: float = 0.0  # the others: PTT presses per hour (0 = they only listen)
    # Listeners that decode and play out (jitter buffer + Opus, mouth-to-ear), per process, on
    # different talkgroups: each costs a decoder running every 20 ms, so they are a sample.
    probes: int = 8
    # Talkers encode their speech at run time with loss-adaptive protection (§9.3), adapting to
    # the probes' receiver reports, instead of replaying the pre-encoded reel (an Opus encoder
    # per talker: a few per process, not a thousand).
    live_talkers: bool = False
    packets_per_message: int = 1
    impairment: ImpairmentConfig = field(default_factory=ImpairmentConfig)
    bad_fix_rate: float = 0.02
    connect_rate_per_s: float = 400.0
    warmup_s: float = 3.0  # after everyone connected, before measuring
    drain_s: float = 5.0  # at the end, for beacons in flight to be acknowledged
    seed: int = 1
    journal_dir: str | None = None  # store-and-forward journals on disk (None: memory only)
    org: str = "longxi"
    routes_geojson: str | None = None  # patrol routes (round-robin) instead of grid perimeters
    speech_wavs: tuple[str, ...] = ()  # talk from these WAV files instead of espeak-ng phrases
    org_path: str | None = None


def plan_fleet(org: Organisation, size: int, prefix: str = "S") -> list[tuple[str, str, str]]:
    """(id, grid, role) for `size` terminals, round-robin over the grids, 3 officers : 2 guards."""
    if size < 1:
        raise SimError("a fleet has at least one terminal")
    grids = sorted(org.grids)
    width = max(4, len(str(size)))
    return [
        (
            f"{prefix}{n + 1:0{width}d}",
            grids[n % len(grids)],
            "guard" if n % 5 in (1, 3) else "officer",
        )
        for n in range(size)
    ]


def choose_talkers(devices: list[DeviceSpec], pct: float) -> set[str]:
    """At most one talker per grid first (so they can all hold a floor), grids spread evenly
    over the list (so every worker process gets its share), then any."""
    wanted = round(len(devices) * pct / 100.0)
    first_of_unit: dict[str, str] = {}
    for device in devices:
        if device.role != "dispatcher":
            first_of_unit.setdefault(device.unit, device.id)
    candidates = list(first_of_unit.values())
    chosen: list[str] = []
    if candidates and wanted:
        step = max(1.0, len(candidates) / wanted)
        picks = {int(i * step) for i in range(min(wanted, len(candidates)))}
        chosen = [candidates[i] for i in sorted(picks)]
    for device in devices:
        if len(chosen) >= wanted:
            break
        if device.id not in chosen:
            chosen.append(device.id)
    return set(chosen)


@dataclass(slots=True)
class WorkerSpec:
    index: int
    host: str
    port: int
    devices: list[DeviceSpec]
    talkers: set[str]
    options: FleetOptions
    tls: bool = False
    cafile: str | None = None  # the CA terminals trust on mqtts:// (None: the system's)


def _profile(org: Organisation, device: DeviceSpec) -> TerminalProfile:
    tgs = org.default_affiliation(device.unit, device.role)
    return TerminalProfile(device.id, device.unit, device.role, tgs, tgs[0])


def _route(org: Organisation, unit: str) -> Route | None:
    grid = org.grids.get(unit)
    return Route.from_grid(grid) if grid is not None else None


class Worker:
    """The terminals of one process and their shared scheduler."""

    def __init__(self, spec: WorkerSpec, logger: logging.Logger | None = None) -> None:
        self.spec = spec
        self.log = logger or log
        options = spec.options
        self.org, _ = resolve_org(options.org_path or options.org)
        self.scheduler = Scheduler()
        self.lag = LoopLagMonitor()
        self.terminals: list[SimTerminal] = []
        self.rng = random.Random(options.seed * 1000 + spec.index)

    def build(self) -> None:
        options, spec = self.spec.options, self.spec
        reel = (
            wav_reel(tuple(Path(p) for p in options.speech_wavs))
            if options.speech_wavs
            else (phrase_reel())
        )
        routes = load_geojson_routes(Path(options.routes_geojson)) if options.routes_geojson else []
        wall_offset = time.time() - time.monotonic()
        # Probes on different talkgroups, those with a talker first (they have something to hear).
        talking_units = {d.unit for d in spec.devices if d.id in spec.talkers}
        probes: set[str] = set()
        probe_units: set[str] = set()
        listeners = [d for d in spec.devices if d.id not in spec.talkers]
        for device in sorted(listeners, key=lambda d: d.unit not in talking_units):
            if len(probes) < options.probes and device.unit not in probe_units:
                probe_units.add(device.unit)
                probes.add(device.id)
        # One TLS context for the worker's terminals (contexts do not cross processes).
        tls = client_tls_context(spec.cafile) if spec.tls else None
        for n, device in enumerate(spec.devices):
            talker = device.id in spec.talkers
            if talker:
                talk = TalkPattern("continuous", gap_s=(0.2, 0.6))
            elif options.talk_rate_per_h > 0:
                talk = TalkPattern("poisson", rate_per_h=options.talk_rate_per_h)
            else:
                talk = TalkPattern()
            config = FirmwareConfig(
                gps=GpsConfig(
                    moving_interval_s=options.beacon_interval_s,
                    adaptive=options.adaptive_beacons,
                    bad_fix_rate=options.bad_fix_rate,
                ),
                impairment=options.impairment,
                talk=talk,
                packets_per_message=options.packets_per_message,
                probe=device.id in probes,
                live_voice=talker and options.live_talkers,
                boot_s=n / options.connect_rate_per_s,
            )
            rng = random.Random(self.rng.random())
            journal = None
            if options.journal_dir is not None:
                journal = BeaconJournal(Path(options.journal_dir) / f"{device.id}.jsonl")
            client = AsyncTerminalClient(
                device.id,
                device.secret,
                spec.host,
                spec.port,
                beacons=BeaconQueue(journal=journal),
                decode_frames=device.id in probes,
                gate=Impairment(options.impairment, rng) if options.impairment.active else None,
                backoff_max=5.0,
                logger=self.log,
                tls=tls,
            )
            firmware = Firmware(
                _profile(self.org, device),
                config,
                client.session,
                now=time.monotonic(),
                wall_offset=wall_offset,
                rng=rng,
                route=routes[n % len(routes)] if routes else _route(self.org, device.unit),
                reel=reel,
                logger=self.log,
            )
            client.battery = _battery_reader(firmware)
            if not config.probe:
                client.frame_tap = firmware.listener.fast_frame
            self.terminals.append(SimTerminal(firmware, client, self.scheduler, self.log))

    def connected(self) -> int:
        return sum(1 for t in self.terminals if t.client.is_connected)

    async def run(self, progress: ProgressFn | None = None) -> dict[str, Any]:
        options = self.spec.options
        self.build()
        started = time.monotonic()
        self.scheduler.start()
        self.lag.start()
        for terminal in self.terminals:
            terminal.power_on()
        connect_deadline = started + 30.0 + len(self.terminals) / options.connect_rate_per_s
        while self.connected() < len(self.terminals) and time.monotonic() < connect_deadline:
            await asyncio.sleep(0.1)
            if progress is not None:
                progress(self.snapshot("connecting"))
        connect_s = time.monotonic() - started
        freeze_startup_heap()  # every terminal is built: keep full collections short
        await asyncio.sleep(options.warmup_s)
        self.lag.reset()
        base = self._counts()
        cpu0, window0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        end = window0 + options.duration_s
        while time.monotonic() < end:
            await asyncio.sleep(min(1.0, max(0.0, end - time.monotonic())))
            if progress is not None:
                progress(self.snapshot("running"))
        cpu1, window1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        counts = self._counts()
        connected_at_end = self.connected()
        lag = (self.lag.percentile(50), self.lag.percentile(99), max(self.lag.samples, default=0.0))
        self.lag.stop()
        # No new fixes or talk from here: the beacons in flight are acknowledged (the gateway
        # acks them once stored, tens of ms later), then counted again.
        self.scheduler.stop()
        await self._drain_beacons(options.drain_s)
        drained = self._counts()
        counts["beacons_taken"], counts["beacons_acked"] = (
            drained["beacons_taken"],
            drained["beacons_acked"],
        )
        await asyncio.gather(*(t.shutdown() for t in self.terminals), return_exceptions=True)
        window = window1 - window0
        cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        report = self._report(counts, base, window)
        report.update(
            connected_at_end=connected_at_end,
            worker=self.spec.index,
            connect_s=round(connect_s, 2),
            window_s=round(window, 2),
            cpu_s=round(cpu, 2),
            cpu_sys_s=round(cpu1.ru_stime - cpu0.ru_stime, 2),
            cpu_pct=round(100.0 * cpu / window, 1) if window else 0.0,
            loop_lag_p50_ms=_round(lag[0]),
            loop_lag_p99_ms=_round(lag[1]),
            loop_lag_max_ms=_round(lag[2]),
            scheduler_ticks=self.scheduler.ticks,
        )
        return report

    async def _drain_beacons(self, timeout: float = 5.0) -> None:
        """Before powering off, let beacons in flight be acknowledged (a real terminal would
        keep them in its journal; the report should not count them as outstanding)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = [t for t in self.terminals if t.client.is_connected and len(t.client.beacons)]
            if not busy:
                return
            await asyncio.sleep(0.05)

    def _counts(self) -> dict[str, int]:
        beacons = [t.client.beacons.counters for t in self.terminals]
        stats = [t.firmware.stats for t in self.terminals]
        return {
            "beacons_taken": sum(b.taken for b in beacons),
            "beacons_acked": sum(b.acked for b in beacons),
            "frames_sent": sum(s.frames_sent for s in stats),
            "frames_received": sum(s.meter.totals.frames_received for s in stats),
            "grants": sum(s.grants for s in stats),
        }

    def snapshot(self, phase: str) -> dict[str, Any]:
        counts: dict[str, Any] = dict(self._counts())
        talking = sum(1 for t in self.terminals if t.firmware.state.value == "transmitting")
        counts.update(
            worker=self.spec.index,
            phase=phase,
            terminals=len(self.terminals),
            connected=self.connected(),
            talking=talking,
            queued_beacons=sum(len(t.client.beacons) for t in self.terminals),
            loop_lag_p99_ms=_round(self.lag.percentile(99)),
        )
        return counts

    def _report(
        self, counts: dict[str, int], base: dict[str, int], window: float
    ) -> dict[str, Any]:
        access, queue_wait, m2e, m2a, late = (Histogram() for _ in range(5))
        totals: dict[str, Any] = {}
        beacon_totals: dict[str, int] = {}
        for terminal in self.terminals:
            stats = terminal.firmware.stats
            stats.meter.close_all()
            access.merge(stats.access_ms)
            queue_wait.merge(stats.queue_wait_ms)
            m2e.merge(stats.mouth_to_ear)
            m2a.merge(stats.meter.mouth_to_arrival)
            late.merge(stats.meter.late_entry_ms)
            for key, value in stats.summary().items():
                _accumulate(totals, key, value)
            for key, value in dataclasses.asdict(terminal.client.beacons.counters).items():
                beacon_totals[key] = beacon_totals.get(key, 0) + value
            beacon_totals["still_queued"] = beacon_totals.get("still_queued", 0) + len(
                terminal.client.beacons
            )
        rates = {
            f"{key}_per_s": round((counts[key] - base[key]) / window, 1) if window else 0.0
            for key in counts
        }
        return {
            "terminals": len(self.terminals),
            "talkers": len(self.spec.talkers),
            "beacons": beacon_totals,
            "firmware": totals,
            "rates": rates,
            "histograms": {
                "access_ms": access.to_dict(),
                "queue_wait_ms": queue_wait.to_dict(),
                "mouth_to_ear_ms": m2e.to_dict(),
                "mouth_to_arrival_ms": m2a.to_dict(),
                "late_entry_ms": late.to_dict(),
            },
        }


def _battery_reader(firmware: Firmware) -> Callable[[], int | None]:
    return lambda: firmware.battery.percent


def _accumulate(into: dict[str, Any], key: str, value: Any) -> None:
    if isinstance(value, dict):
        table = into.setdefault(key, {})
        for k, v in value.items():
            table[k] = table.get(k, 0) + v
    else:
        into[key] = into.get(key, 0) + value


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def worker_main(spec: WorkerSpec, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Run one worker to completion on a fresh event loop (the entry point of a process).

    uvloop when installed: a listening terminal is mostly socket callbacks.
    """
    try:
        return run_event_loop(Worker(spec).run(progress))
    finally:
        gc.unfreeze()  # run in the caller's process (one worker): give it its collector back


def with_duration(options: FleetOptions, seconds: float) -> FleetOptions:
    return replace(options, duration_s=seconds)
