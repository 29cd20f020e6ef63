"""Fleet benchmark: how many simulated terminals one simulator process sustains.

    python bench/fleet.py [--quick] [--runs 500@20,1000@60] [--window 20] [--big 10000]

For each run (fleet size, voice message duration) one simulator process (its own event loop, one
MQTT connection per terminal) runs the terminals against the managed broker + gateway (this
parent process and mosquitto, on the same 2 cores): beacons every 5 s (not adapted to
movement), 5 % of terminals talking on and on (one per grid of 20, so every talker holds a floor;
the other 19 listen and account for every frame; 8 listeners on different grids decode and play
out). Voice messages carry one 20 ms Opus packet (the protocol default) or three (60 ms).
Reported per row: the simulator process's own CPU share and event-loop lag (p99 of a 50 ms
timer's lateness), beacons acknowledged per second, voice frames sent and heard per second,
access time, mouth-to-ear, frame loss. The target is >= 1,000 terminals per process with loop
lag p99 <= 20 ms. Without --quick, a --big fleet (10,000 terminals, 0.5 % talking) then runs over
several processes to show it connects and reports. Writes bench/results/fleet.json, with the
machine's load before and after (the machine may be shared).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from firmware_sim.deployment import Deployment  # noqa: E402
from firmware_sim.fleet import FleetOptions, plan_fleet  # noqa: E402
from firmware_sim.fleet_run import (  # noqa: E402
    ProgressLine,
    merge_reports,
    run_workers,
    split_workers,
)
from xixin.environment import ManagedEnvironment  # noqa: E402

GRID_SIZE = 20  # terminals per grid: one talker + 19 listeners at 5 %
TARGET_LAG_MS = 20.0


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    with contextlib.suppress(OSError):
        info["cpu_pressure"] = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    return info


def subset(deployment: Deployment, grids: int) -> Deployment:
    """The terminals of the first `grids` grids (GRID_SIZE each: sizes are rounded down)."""
    wanted = {f"grid-{g + 1:04d}" for g in range(grids)}
    devices = {k: d for k, d in deployment.devices.items() if d.unit in wanted}
    return Deployment(deployment.host, deployment.port, devices)


def row(report: dict[str, Any], processes: int, message_ms: int) -> dict[str, Any]:
    rates, p = report["rates"], report["percentiles"]
    per = report["per_worker"]
    return {
        "terminals": report["terminals"],
        "processes": processes,
        "talkers": report["talkers"],
        "message_ms": message_ms,
        "connected": report["connected_at_end"],
        "beacons_per_s": rates.get("beacons_acked_per_s"),
        "frames_sent_per_s": rates.get("frames_sent_per_s"),
        "frames_heard_per_s": rates.get("frames_received_per_s"),
        "cpu_pct_per_process": [w["cpu_pct"] for w in per],
        "cpu_sys_share_per_process": [w.get("cpu_sys_share") for w in per],
        "loop_lag_p99_ms": report["loop_lag_p99_ms"],
        "loop_lag_p99_ms_per_process": [w["loop_lag_p99_ms"] for w in per],
        "connect_s": max(w["connect_s"] for w in per),
        "access_p50_ms": p.get("access_ms", {}).get("p50"),
        "access_p95_ms": p.get("access_ms", {}).get("p95"),
        "mouth_to_ear_p95_ms": p.get("mouth_to_ear_ms", {}).get("p95"),
        "mouth_to_arrival_p95_ms": p.get("mouth_to_arrival_ms", {}).get("p95"),
        "frame_loss_pct": report["frame_loss_pct"],
        "beacons_outstanding_at_end": report["beacons"].get("still_queued", 0),
        "window_s": report["window_s"],
        "meets_target": (report["loop_lag_p99_ms"] or 1e9) <= TARGET_LAG_MS
        and report["connected_at_end"] == report["terminals"],
    }


def run_size(
    deployment: Deployment, options: FleetOptions, processes: int, message_ms: int
) -> dict[str, Any]:
    specs = split_workers(deployment, options, processes)
    started = time.monotonic()
    line = ProgressLine(sys.stdout, len(deployment.devices)) if processes > 1 else None
    reports = run_workers(specs, processes=True, progress=line.update if line else None)
    if line is not None:
        line.done()
    result = row(merge_reports(reports), processes, message_ms)
    result["wall_s"] = round(time.monotonic() - started, 1)
    print(
        f"  {result['terminals']:>6} terminals / {processes} proc: "
        f"beacons {result['beacons_per_s']}/s, frames heard {result['frames_heard_per_s']}/s, "
        f"CPU {result['cpu_pct_per_process']} %, loop lag p99 {result['loop_lag_p99_ms']} ms, "
        f"access p95 {result['access_p95_ms']} ms, m2e p95 {result['mouth_to_ear_p95_ms']} ms",
        flush=True,
    )
    return result


def options_for(
    env: ManagedEnvironment,
    window: float,
    message_ms: int,
    connect_rate: float,
    talkers_pct: float = 5.0,
) -> FleetOptions:
    return FleetOptions(
        duration_s=window,
        beacon_interval_s=5.0,
        adaptive_beacons=False,
        talkers_pct=talkers_pct,
        probes=8,
        packets_per_message=message_ms // 20,
        bad_fix_rate=0.02,
        connect_rate_per_s=connect_rate,
        warmup_s=4.0,
        org=f"synthetic:{len(env.org.grids)}",
        org_path=str(env.org_path) if env.org_path else None,
    )


def per_process(runs: list[tuple[int, int]], window: float, quick: bool) -> list[dict[str, Any]]:
    """One simulator process per run: (terminals, voice message ms)."""
    grids = math.ceil(max(size for size, _ in runs) / GRID_SIZE)
    env = ManagedEnvironment(f"synthetic:{grids}")
    rows = []
    try:
        deployment = env.start(plan_fleet(env.org, grids * GRID_SIZE))
        for size, message_ms in runs:
            options = options_for(env, window, message_ms, 400.0)
            if quick:
                options = replace(options, warmup_s=3.0, drain_s=1.0)
            part = subset(deployment, size // GRID_SIZE)
            rows.append(run_size(part, options, 1, message_ms))
    finally:
        env.stop()
    return rows


def big_fleet(
    size: int, processes: int, window: float, message_ms: int, talkers_pct: float
) -> dict[str, Any]:
    grids = math.ceil(size / GRID_SIZE)
    env = ManagedEnvironment(f"synthetic:{grids}")
    try:
        started = time.monotonic()
        deployment = env.start(plan_fleet(env.org, size))
        provision_s = time.monotonic() - started
        # Connect slowly: the broker checks every password (PBKDF2) on one core, and a CONNACK
        # later than the client's timeout only brings the same terminal back a moment later.
        options = options_for(env, window, message_ms, 300.0 / processes, talkers_pct)
        result = run_size(deployment, options, processes, message_ms)
        result["talkers_pct"] = talkers_pct
        result["provision_s"] = round(provision_s, 1)
        result["gateway"] = env.counters()
        return result
    finally:
        env.stop()


def parse_runs(text: str) -> list[tuple[int, int]]:
    """`500@20,1000@60` -> [(500, 20), (1000, 60)]; a bare size means 20 ms messages."""
    runs = []
    for item in text.split(","):
        size, _, ms = item.strip().partition("@")
        runs.append((int(size), int(ms or 20)))
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two runs, short windows (<45 s)")
    parser.add_argument(
        "--runs", help="terminals@message_ms, comma-separated, e.g. 500@20,1000@60 (x20)"
    )
    parser.add_argument("--window", type=float, help="measured seconds per run")
    parser.add_argument("--big", type=int, default=10000, help="the multi-process fleet (0: skip)")
    parser.add_argument("--big-processes", type=int, default=5)
    parser.add_argument("--big-talkers-pct", type=float, default=0.5)
    parser.add_argument("--big-message-ms", type=int, choices=(20, 40, 60), default=60)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fleet.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.runs:
        runs = parse_runs(args.runs)
    elif args.quick:
        runs = [(500, 20), (1000, 60)]
    else:
        runs = [(s, ms) for ms in (20, 60) for s in (500, 1000, 1500)]
    window = args.window or (5.0 if args.quick else 20.0)
    started = time.monotonic()
    result: dict[str, Any] = {
        "benchmark": "fleet",
        "quick": args.quick,
        "machine_before": machine(),
        "setup": {
            "beacon_interval_s": 5.0,
            "talkers_pct": 5.0,
            "terminals_per_grid": GRID_SIZE,
            "decoding_probes_per_process": 8,
            "window_s": window,
            "message_ms": "20 = one 20 ms Opus packet per MQTT message (the protocol default); "
            "60 = three (protocol §3 allows 20-60 ms per message)",
            "target": f">= 1000 terminals per process with loop lag p99 <= {TARGET_LAG_MS} ms",
        },
    }
    print(f"fleet benchmark: runs {runs}, {window:g} s each")
    result["rows"] = per_process(runs, window, args.quick)
    best: dict[str, int] = {}
    for r in result["rows"]:
        if r["meets_target"]:
            key = f"{r['message_ms']}ms"
            best[key] = max(best.get(key, 0), r["terminals"])
    result["max_terminals_per_process_meeting_target"] = best
    result["max_terminals_per_process"] = max(best.values(), default=0)
    if not args.quick and args.big:
        print(
            f"big fleet: {args.big} terminals over {args.big_processes} processes, "
            f"{args.big_talkers_pct} % talking"
        )
        result["big_fleet"] = big_fleet(
            args.big, args.big_processes, window, args.big_message_ms, args.big_talkers_pct
        )
    result["machine_after"] = machine()
    result["wall_s"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(f"wrote {args.out} ({result['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
