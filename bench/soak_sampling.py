"""Sampling of the soak benchmark (bench/soak.py): the gateway's memory, backlog and metrics
read every second on a thread, kept every --sample-every seconds, and the trends drawn from them;
also the machine's own state (cores, load, whether the fault benchmark runs alongside).
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import cpu_seconds
from bench.soak_gateway import Gateway, children, family, open_files, proc_status, scrape


def machine() -> dict[str, Any]:
    """Cores, Python, load and CPU pressure (the machine may be shared), and whether the other
    engineers' fault benchmark is running."""
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "faults_bench_running": bool(other_benchmarks()),
    }
    with contextlib.suppress(OSError):
        info["cpu_pressure"] = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path("/proc/meminfo").read_text().split("\n")
        info["mem_available_mb"] = round(int(fields[2].split()[1]) / 1024)
    return info


def other_benchmarks() -> list[int]:
    """PIDs of processes running bench/faults.py (another engineer's benchmark): one of its
    arguments is the script, so a shell merely waiting to start it (`bash -c '... exec python
    bench/faults.py'`, one argument) is not counted."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if any(arg.endswith(b"bench/faults.py") for arg in argv):
                found.append(int(entry.name))
    return found


def busy_cores() -> tuple[float, float]:
    """(busy jiffies, total jiffies) of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]
    return float(sum(values) - idle), float(sum(values))


# ---- sampling ---------------------------------------------------------------------------------


@dataclass
class Phase:
    """Where the fleet is, from its workers' progress snapshots."""

    workers: int
    window_s: float
    phases: dict[int, str] = field(default_factory=dict)
    running_since: float | None = None
    fleet_done: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def update(self, snapshot: dict[str, Any]) -> None:
        with self.lock:
            self.phases[int(snapshot["worker"])] = str(snapshot["phase"])
            if (
                self.running_since is None
                and len(self.phases) == self.workers
                and all(p == "running" for p in self.phases.values())
            ):
                self.running_since = time.monotonic()

    def now(self) -> str:
        with self.lock:
            if self.fleet_done:
                return "after"
            if self.running_since is None:
                return "connecting/warm-up"
            if time.monotonic() < self.running_since + self.window_s:
                return "running"
            return "drain"


class Sampler(threading.Thread):
    """Reads the gateway every `tick_s` (RSS, backlog); keeps a full sample every `every_s`."""

    def __init__(self, gateway: Gateway, phase: Phase, every_s: float, tick_s: float = 1.0):
        super().__init__(name="soak-sampler", daemon=True)
        self.gateway, self.phase = gateway, phase
        self.every_s, self.tick_s = every_s, tick_s
        self.stop_event = threading.Event()
        self.started = time.monotonic()
        self.series: list[dict[str, Any]] = []
        self.max_backlog = 0.0
        self.max_backlog_at_s: float | None = None
        self.max_journal = 0.0
        self.backlog_reads = 0
        self.scrape_errors = 0
        self.start_sample: dict[str, Any] | None = None
        self.end_sample: dict[str, Any] | None = None
        self.start_metrics: dict[str, float] = {}
        self.end_metrics: dict[str, float] = {}
        self.last_metrics: dict[str, float] = {}
        self.faults_seen = False
        self._last_kept = -math.inf

    def read(self) -> tuple[dict[str, Any], dict[str, float]]:
        gw = self.gateway
        status = proc_status(gw.pid)
        metrics: dict[str, float] = {}
        try:
            assert gw.api is not None  # made by start()
            metrics = scrape(gw.api)
        except (OSError, ValueError):
            self.scrape_errors += 1
        t = round(time.monotonic() - self.started, 1)
        sample: dict[str, Any] = {
            "t_s": t,
            "phase": self.phase.now(),
            "rss_mb": status.get("VmRSS"),
            "rss_anon_mb": status.get("RssAnon"),
            "rss_file_mb": status.get("RssFile"),
            "rss_shmem_mb": status.get("RssShmem"),
            "hwm_mb": status.get("VmHWM"),
        }
        if metrics:
            backlog = metrics.get('xixin_writer_backlog{writer="positions"}', 0.0)
            self.backlog_reads += 1
            if backlog > self.max_backlog:
                self.max_backlog, self.max_backlog_at_s = backlog, t
            self.max_journal = max(
                self.max_journal, metrics.get('xixin_writer_journal_items{writer="positions"}', 0.0)
            )
            sample["backlog"] = backlog
            self.last_metrics = metrics
        return sample, metrics

    def enrich(self, sample: dict[str, Any], metrics: dict[str, float]) -> dict[str, Any]:
        """What else might grow: threads, files, children, database, the gateway's gauges."""
        gw = self.gateway
        status = proc_status(gw.pid)
        kids = children(gw.pid)
        sample.update(
            threads=status.get("Threads"),
            open_files=open_files(gw.pid),
            mosquitto_rss_mb=proc_status(kids["mosquitto"]).get("VmRSS")
            if "mosquitto" in kids
            else None,
            recorder_rss_mb=proc_status(kids["recorder"]).get("VmRSS")
            if "recorder" in kids
            else None,
            db_mb=gw.db_mb(),
            gateway_cpu_s=round(cpu_seconds(gw.pid), 1),
        )
        if metrics:
            sample.update(
                devices_online=metrics.get("xixin_devices_online"),
                positions_stored=metrics.get("xixin_positions_stored_total"),
                positions_pending=metrics.get("xixin_positions_pending"),
                beacons_received=sum(family(metrics, "xixin_beacons_received_total").values()),
                frames_relayed=metrics.get("xixin_frames_relayed_total"),
                grants=metrics.get('xixin_floor_events_total{event="grant"}'),
                floors_taken=metrics.get("xixin_floors_taken"),
                queue_depth_all=metrics.get('xixin_floor_queue_depth{floor="all"}'),
                broker_stored_bytes=metrics.get("xixin_broker_stored_bytes"),
                broker_dropped=metrics.get("xixin_broker_messages_dropped_total"),
                recorder_backlog_bytes=metrics.get("xixin_recorder_backlog_bytes"),
            )
        sample["faults_bench_running"] = bool(other_benchmarks())
        self.faults_seen = self.faults_seen or sample["faults_bench_running"]
        return sample

    def run(self) -> None:
        while not self.stop_event.wait(self.tick_s):
            self.once()

    def once(self, keep: bool = False, label: str | None = None) -> dict[str, Any]:
        sample, metrics = self.read()
        phase = sample["phase"]
        now = time.monotonic()
        first_running = phase == "running" and self.start_sample is None
        if keep or first_running or now - self._last_kept >= self.every_s:
            self._last_kept = now
            sample = self.enrich(sample, metrics)
            if label is not None:
                sample["phase"] = label
            self.series.append(sample)
        if first_running:
            self.start_sample, self.start_metrics = sample, metrics
        if phase == "running":
            self.end_sample, self.end_metrics = sample, metrics
        return sample

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)


def slope_mb_per_h(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MB) in MB per real hour."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    if sxx == 0:
        return None
    return round(3600.0 * sum((t - mx) * (v - my) for t, v in points) / sxx, 2)


def growth(start: dict[str, float], end: dict[str, float]) -> dict[str, dict[str, float]]:
    """Gauges of /metrics that changed between two scrapes (counters are expected to grow)."""
    changed = {}
    for key in sorted(set(start) | set(end)):
        if key.split("{")[0].endswith(("_total", "_created")):
            continue
        a, b = start.get(key, 0.0), end.get(key, 0.0)
        if a != b:
            changed[key] = {"start": a, "end": b}
    return changed
