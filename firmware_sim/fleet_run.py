"""`xixin sim --fleet N`: workers in several processes, live progress, merged report.

Terminals are split into contiguous shares by grid (a grid's team mostly shares a process);
each worker process runs :func:`firmware_sim.fleet.worker_main` and sends progress snapshots and
its final report back through a queue. The merged report is printed as a table and written as
JSON.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import multiprocessing
import queue
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from firmware_sim.deployment import Deployment, DeviceSpec
from firmware_sim.errors import SimError
from firmware_sim.fleet import FleetOptions, WorkerSpec, choose_talkers, worker_main
from firmware_sim.reception import Histogram

log = logging.getLogger(__name__)
PER_PROCESS = 1000


def split_workers(
    deployment: Deployment, options: FleetOptions, processes: int
) -> list[WorkerSpec]:
    devices = sorted(deployment.devices.values(), key=lambda d: (d.unit, d.id))
    talkers = choose_talkers(devices, options.talkers_pct)
    count = max(1, processes)
    share = math.ceil(len(devices) / count)
    specs = []
    for index in range(count):
        part: list[DeviceSpec] = devices[index * share : (index + 1) * share]
        if part:
            mine = {d.id for d in part} & talkers
            where = (deployment.host, deployment.port)
            tls = (deployment.tls, deployment.cafile)
            specs.append(WorkerSpec(index, *where, part, mine, options, *tls))
    return specs


def _process_main(spec: WorkerSpec, out: multiprocessing.Queue[Any]) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    last = [0.0]

    def progress(snapshot: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - last[0] >= 1.0:
            last[0] = now
            out.put(("progress", snapshot))

    try:
        out.put(("report", worker_main(spec, progress)))
    except BaseException as exc:  # reported to the parent, which fails the run
        out.put(("error", {"worker": spec.index, "error": f"{type(exc).__name__}: {exc}"}))


class ProgressLine:
    """One status line, rewritten in place on a terminal, printed every 5 s otherwise."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream = stream
        self.total = total
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self._last_print = 0.0
        self.workers: dict[int, dict[str, Any]] = {}

    def update(self, snapshot: dict[str, Any]) -> None:
        self.workers[int(snapshot["worker"])] = snapshot
        now = time.monotonic()
        if not self.tty and now - self._last_print < 5.0:
            return
        self._last_print = now
        w = self.workers.values()
        lags = [s["loop_lag_p99_ms"] for s in w if s.get("loop_lag_p99_ms") is not None]
        text = (
            f"t={now - self.started:5.0f}s  connected {sum(s['connected'] for s in w)}/{self.total}"
            f"  beacons {sum(s['beacons_acked'] for s in w)}/{sum(s['beacons_taken'] for s in w)}"
            f" acked  queued {sum(s['queued_beacons'] for s in w)}"
            f"  talking {sum(s['talking'] for s in w)}  grants {sum(s['grants'] for s in w)}"
            f"  frames {sum(s['frames_sent'] for s in w)} sent/"
            f"{sum(s['frames_received'] for s in w)} heard"
            f"  lag p99 {max(lags) if lags else 0:.1f} ms"
        )
        if self.tty:
            self.stream.write("\r" + text[:160].ljust(160))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")


def run_workers(
    specs: list[WorkerSpec],
    processes: bool,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run the workers (in processes, or one in this process) and return their reports."""
    if not processes:
        if len(specs) != 1:
            raise SimError("in-process runs have exactly one worker")
        return [worker_main(specs[0], progress)]
    context = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[Any] = context.Queue()
    children = [
        context.Process(target=_process_main, args=(spec, out), name=f"sim-worker-{spec.index}")
        for spec in specs
    ]
    for child in children:
        child.start()
    reports: list[dict[str, Any]] = []
    errors: list[str] = []
    options = specs[0].options
    largest = max(len(spec.devices) for spec in specs)
    deadline = (
        time.monotonic()
        + 30.0  # the connect phase's own margin (fleet.Worker.run)
        + largest / options.connect_rate_per_s
        + options.warmup_s
        + options.duration_s
        + options.drain_s
        + 300.0
    )
    try:
        while len(reports) + len(errors) < len(children):
            if time.monotonic() > deadline:
                raise SimError("fleet workers did not finish in time")
            try:
                kind, body = out.get(timeout=1.0)
            except queue.Empty:
                dead = [c for c in children if c.exitcode not in (None, 0)]
                if dead:
                    raise SimError(
                        f"worker {dead[0].name} died (exit {dead[0].exitcode})"
                    ) from None
                continue
            if kind == "progress" and progress is not None:
                progress(body)
            elif kind == "report":
                reports.append(body)
            elif kind == "error":
                errors.append(f"worker {body['worker']}: {body['error']}")
    finally:
        for child in children:
            child.join(30)
            if child.is_alive():
                child.terminate()  # our own child, by its handle
                child.join(5)
    if errors:
        raise SimError("; ".join(errors))
    return sorted(reports, key=lambda r: r["worker"])


def merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One fleet report from the workers' reports."""
    merged: dict[str, Any] = {"workers": len(reports)}
    for key in ("terminals", "talkers", "connected_at_end"):
        merged[key] = sum(r[key] for r in reports)
    for section in ("beacons", "firmware", "rates"):
        table: dict[str, Any] = {}
        for report in reports:
            for key, value in report[section].items():
                if isinstance(value, dict):
                    inner = table.setdefault(key, {})
                    for k, v in value.items():
                        inner[k] = inner.get(k, 0) + v
                else:
                    table[key] = round(table.get(key, 0) + value, 1)
        merged[section] = table
    histograms: dict[str, Histogram] = {}
    for report in reports:
        for name, counts in report["histograms"].items():
            histograms.setdefault(name, Histogram()).merge({int(k): v for k, v in counts.items()})
    merged["percentiles"] = {
        name: {
            "n": h.total,
            "p50": h.percentile(50),
            "p95": h.percentile(95),
            "p99": h.percentile(99),
        }
        for name, h in histograms.items()
    }
    fw = merged["firmware"]
    expected = fw.get("frames_expected", 0)
    received = fw.get("frames_received", 0)
    merged["frame_loss_pct"] = (
        round(100.0 * max(0, expected - received) / expected, 3) if expected else None
    )
    lags = [r["loop_lag_p99_ms"] for r in reports if r.get("loop_lag_p99_ms") is not None]
    merged["loop_lag_p99_ms"] = max(lags) if lags else None
    merged["cpu_pct_per_process"] = [r["cpu_pct"] for r in reports]
    merged["window_s"] = min(r["window_s"] for r in reports)
    merged["per_worker"] = [
        {k: r.get(k) for k in ("worker", "terminals", "connect_s", "cpu_pct", "loop_lag_p99_ms")}
        | {"cpu_sys_share": round(r["cpu_sys_s"] / r["cpu_s"], 2) if r.get("cpu_s") else None}
        for r in reports
    ]
    return merged


def summary_table(report: dict[str, Any]) -> str:
    b, fw, p = report["beacons"], report["firmware"], report["percentiles"]

    def pct(name: str, q: str) -> str:
        value = p.get(name, {}).get(q)
        return "-" if value is None else f"{value:.0f} ms"

    denied = sum(fw.get("denied", {}).values())
    lost = b.get("taken", 0) - b.get("acked", 0) - b.get("still_queued", 0) - b.get("refused", 0)
    rows = [
        (
            "terminals",
            f"{report['terminals']} ({report['connected_at_end']} connected at end, "
            f"{report['talkers']} talkers, {report['workers']} process(es))",
        ),
        (
            "beacons sent / acked",
            f"{b.get('taken', 0)} / {b.get('acked', 0)}  (queued at end "
            f"{b.get('still_queued', 0)}, overflowed {b.get('overflowed', 0)},"
            f" lost {lost})",
        ),
        (
            "bursts",
            f"{fw.get('bursts_sent', 0)} sent  ({fw.get('grants', 0)} grants, "
            f"{fw.get('queued', 0)} queued, {denied} denied, {fw.get('no_reply', 0)} "
            f"no reply)",
        ),
        ("access time", f"p50 {pct('access_ms', 'p50')}  p95 {pct('access_ms', 'p95')}"),
        (
            "mouth-to-ear",
            f"p50 {pct('mouth_to_ear_ms', 'p50')}  p95 "
            f"{pct('mouth_to_ear_ms', 'p95')}  (decoding probes)",
        ),
        ("mouth-to-arrival", f"p95 {pct('mouth_to_arrival_ms', 'p95')}  (all listeners)"),
        (
            "frame loss",
            f"{report['frame_loss_pct']} %  ({fw.get('frames_received', 0)} of "
            f"{fw.get('frames_expected', 0)} frames heard)",
        ),
        ("late entries", f"{fw.get('late_entries', 0)}"),
        ("loop lag p99", f"{report['loop_lag_p99_ms']} ms  CPU {report['cpu_pct_per_process']} %"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"  {name.ljust(width)}  {value}" for name, value in rows)


def run_fleet(
    deployment: Deployment,
    options: FleetOptions,
    processes: int | None = None,
    stream: TextIO | None = None,
    json_path: Path | None = None,
) -> dict[str, Any]:
    """Run the fleet against a deployment; print progress and the summary; return the report."""
    out = stream or sys.stdout
    count = processes if processes is not None else math.ceil(len(deployment.devices) / PER_PROCESS)
    specs = split_workers(deployment, options, count)
    line = ProgressLine(out, len(deployment.devices))
    try:
        reports = run_workers(specs, processes=count > 0, progress=line.update)
    finally:
        line.done()
    report = merge_reports(reports)
    report["options"] = _options_dict(options)
    out.write(summary_table(report) + "\n")
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
        out.write(f"  report written to {json_path}\n")
    return report


def _options_dict(options: FleetOptions) -> dict[str, Any]:
    return {
        f.name: (
            dataclasses.asdict(getattr(options, f.name))
            if dataclasses.is_dataclass(getattr(options, f.name))
            else getattr(options, f.name)
        )
        for f in dataclasses.fields(options)
    }
