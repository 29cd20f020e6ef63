"""Soak benchmark: a 500-terminal fleet for an hour's worth of traffic; loss and gateway memory.

    python bench/soak.py [--quick] [--terminals 500] [--window 720] [--warmup 60]

The gateway runs as its own process, as in production: `xixin up` (managed mosquitto on a free
loopback port, SQLite in a temporary data directory, recorder, tracking ingest, API on a free
port), after the fleet's devices were provisioned with `xixin devices import`. The simulated
fleet (GPS patrols, beacons, talk bursts, a few network outages and reconnects) runs in worker
processes of this script, so the gateway's resident memory (VmRSS of the `xixin up` process, from
/proc) is the gateway's alone; mosquitto and the recorder (its children) are sampled separately.

Time compression. Terminals beacon every 1 s instead of the nominal 5 s (fixed, not adapted to
movement), so one real second carries five seconds' worth of beacons: 720 s of real traffic are
the 720 beacons per terminal of one simulated hour at 5 s. PTT presses are drawn at 5x the
nominal hourly rate and outages at 5x the nominal rate, so bursts and reconnects also add up to
an hour's worth. What is not compressed: walking speed (a patrol covers 12 minutes of ground),
burst and outage lengths, the fix time (wall clock), and every timer of the gateway (presence,
alarms) — the traffic of an hour is squeezed into 12 minutes, its clock is not sped up.

Every 1 s the script reads the gateway's VmRSS and /metrics (the positions writer's backlog, the
maximum is `max_backlog`); every --sample-every seconds it keeps a sample (RSS of the gateway,
mosquitto and recorder, threads, open files, database size, /metrics gauges and counters).
`rss_start_mb` is read when every worker has connected its terminals and finished the warm-up,
`rss_end_mb` at the end of the traffic window (the fleet still connected). After the fleet stops
the script waits until the positions table stops growing; `lost` = beacons the broker
acknowledged to the terminals minus rows stored (deliberately bad GPS fixes are turned off so
that every acknowledged beacon must become exactly one row). Targets: lost = 0, and rss_end
within 10 % of rss_start. Writes bench/results/soak.json (--quick: 100 terminals, <= 2 min,
bench/results/tmp/soak.json).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import cpu_seconds  # noqa: E402
from bench.soak_gateway import Gateway, children, family  # noqa: E402
from bench.soak_sampling import (  # noqa: E402
    Phase,
    Sampler,
    busy_cores,
    growth,
    machine,
    slope_mb_per_h,
)
from firmware_sim.deployment import Deployment, resolve_org  # noqa: E402
from firmware_sim.fleet import FleetOptions, plan_fleet  # noqa: E402
from firmware_sim.fleet_run import (  # noqa: E402
    ProgressLine,
    merge_reports,
    run_workers,
    split_workers,
)
from firmware_sim.impairment import ImpairmentConfig  # noqa: E402

GRID_SIZE = 20  # terminals per synthetic grid (one talkgroup each)
NOMINAL_INTERVAL_S = 5.0  # the simulator's default beacon interval: what one "hour" is counted in
RSS_TARGET_PCT = 10.0


# ---- the run ----------------------------------------------------------------------------------


def settle(gateway: Gateway, sampler: Sampler, quiet_s: float, timeout: float) -> dict[str, Any]:
    """Wait until the positions table stops growing (and the writer has nothing waiting)."""
    started = time.monotonic()
    last, stable_since = -1, time.monotonic()
    while time.monotonic() - started < timeout:
        count = gateway.positions()
        backlog = sampler.last_metrics.get('xixin_writer_backlog{writer="positions"}', 0.0)
        if count != last:
            last, stable_since = count, time.monotonic()
        elif backlog == 0 and time.monotonic() - stable_since >= quiet_s:
            break
        time.sleep(0.5)
    return {"rows": last, "settle_s": round(time.monotonic() - started, 1)}


@dataclass
class Measured:
    """What one run measured, before it is summarised."""

    workers: int
    fleet_s: float
    report: dict[str, Any]
    sampler: Sampler
    idle: dict[str, Any]
    settled: dict[str, Any]
    settled_sample: dict[str, Any]
    cpu: dict[str, float]
    machine_busy_pct: float
    log_counts: dict[str, Any]
    exit_code: int | None
    rows_after_stop: int


def fleet_options(args: argparse.Namespace, org: str, org_path: Path) -> FleetOptions:
    compression = NOMINAL_INTERVAL_S / args.beacon_interval
    return FleetOptions(
        duration_s=args.window,
        beacon_interval_s=args.beacon_interval,
        adaptive_beacons=False,
        talkers_pct=0.0,
        talk_rate_per_h=args.presses_per_h * compression,
        probes=8,
        impairment=ImpairmentConfig(
            outage_every_s=3600.0 / (args.outages_per_h * compression), outage_s=(5.0, 30.0)
        ),
        bad_fix_rate=0.0,
        connect_rate_per_s=200.0,
        warmup_s=args.warmup,
        drain_s=15.0,
        org=org,
        org_path=str(org_path),
    )


def process_cpu(gateway: Gateway) -> dict[str, float]:
    return {"gateway": cpu_seconds(gateway.pid)} | {
        name: cpu_seconds(pid) for name, pid in children(gateway.pid).items()
    }


def measure(args: argparse.Namespace, gateway: Gateway, org: str) -> Measured:
    """Provision, start the gateway, run the fleet while sampling, wait for the table to settle,
    stop the gateway."""
    organisation, org_path = resolve_org(org, gateway.work)
    assert org_path is not None
    specs = gateway.provision(plan_fleet(organisation, args.terminals))
    gateway.start()
    host, port = gateway.broker_url.removeprefix("mqtt://").rsplit(":", 1)
    options = fleet_options(args, org, org_path)
    workers = split_workers(Deployment(host, int(port), specs), options, args.processes)
    phase = Phase(len(workers), args.window)
    sampler = Sampler(gateway, phase, args.sample_every)
    try:
        cpu0, busy0 = process_cpu(gateway), busy_cores()
        idle = sampler.once(keep=True, label="idle")
        sampler.start()
        compression = NOMINAL_INTERVAL_S / args.beacon_interval
        print(
            f"soak: {args.terminals} terminals ({len(workers)} process(es)), gateway pid "
            f"{gateway.pid} on {gateway.broker_url}, {args.warmup:g} s warm-up + "
            f"{args.window:g} s window = {(args.warmup + args.window) * compression / 3600:.2f} "
            f"simulated h; idle RSS {idle['rss_mb']} MB",
            flush=True,
        )
        line = ProgressLine(sys.stdout, args.terminals)

        def progress(snapshot: dict[str, Any]) -> None:
            phase.update(snapshot)
            line.update(snapshot)

        fleet_started = time.monotonic()
        reports = run_workers(workers, processes=True, progress=progress)
        line.done()
        fleet_s = time.monotonic() - fleet_started
        phase.fleet_done = True
        sampler.once(keep=True, label="fleet stopped")
        settled = settle(gateway, sampler, quiet_s=5.0, timeout=180.0)
        settled_sample = sampler.once(keep=True, label="settled")
    finally:
        sampler.stop()
    busy1, cpu1 = busy_cores(), process_cpu(gateway)
    log_counts = gateway.log_counts()
    exit_code = gateway.stop()
    return Measured(
        workers=len(workers),
        fleet_s=fleet_s,
        report=merge_reports(reports),
        sampler=sampler,
        idle=idle,
        settled=settled,
        settled_sample=settled_sample,
        cpu={name: cpu1.get(name, 0.0) - cpu0.get(name, 0.0) for name in cpu0},
        machine_busy_pct=round(100.0 * (busy1[0] - busy0[0]) / max(1.0, busy1[1] - busy0[1]), 1),
        log_counts=log_counts,
        exit_code=exit_code,
        rows_after_stop=gateway.positions(),
    )


def describe(args: argparse.Namespace, org: str, workers: int, scrapes: int) -> dict[str, Any]:
    """How the traffic was compressed and what each figure is, for the JSON."""
    compression = NOMINAL_INTERVAL_S / args.beacon_interval
    compressed = {
        "factor": compression,
        "how": f"beacons every {args.beacon_interval:g} s (fixed) instead of the nominal "
        f"{NOMINAL_INTERVAL_S:g} s: one real second carries {compression:g} s worth of beacons; "
        f"PTT presses ({args.presses_per_h:g} per terminal per simulated hour) and outages "
        f"({args.outages_per_h:g} per terminal per simulated hour) drawn at {compression:g}x "
        "those rates in real time",
        "simulated_hours": "beacons taken / (terminals x 720), 720 = beacons per hour at 5 s; "
        "simulated_hours_window_only counts the measured window alone (connect, warm-up and "
        "drain carry traffic too)",
        "not_compressed": "walking speed (a patrol covers the ground of the real minutes, not of "
        "an hour), burst lengths (log-normal, mean 4.7 s), outage lengths (5-30 s, so an outage "
        "holds 5x the beacons of one as long at 5 s), fix times (wall clock), and the gateway's "
        "own timers (presence unknown/offline, alarms, writer batching): the gateway sees an "
        "hour's messages in fewer minutes, not a faster clock",
        "bad_fixes": "off (bad_fix_rate 0): with them the filter chain drops some beacons by "
        "design and lost could not be told from filtered",
    }
    outage_every = 3600.0 / (args.outages_per_h * compression)
    setup = {
        "terminals_per_grid": GRID_SIZE,
        "org": org,
        "fleet_processes": workers,
        "beacon_interval_s": args.beacon_interval,
        "warmup_s": args.warmup,
        "window_s": args.window,
        "talk": f"every terminal presses PTT at random (Poisson), {args.presses_per_h:g}/h "
        f"simulated = {args.presses_per_h * compression:g}/h real; no continuous talkers",
        "outages": f"each terminal loses its network every {outage_every:g} s on average (real "
        "time) for 5-30 s, keeps its fixes and flushes them on reconnecting",
        "gateway": "`xixin up` as a subprocess (managed mosquitto on a loopback port, SQLite, "
        "recorder, tracking ingest, API), devices provisioned by `xixin devices import`",
        "rss_start": "the first reading (1 s tick) once every worker finished connecting and the "
        "warm-up",
        "rss_end": "the last reading (1 s tick) of the traffic window, the fleet still connected",
        "units": "memory in MiB (VmRSS kB / 1024), labelled mb",
        "max_backlog": f"max of xixin_writer_backlog{{writer=positions}} over {scrapes} scrapes "
        "of /metrics, one a second",
        "lost": "beacons PUBACKed to the terminals minus rows in positions once the count stopped "
        "growing (5 s unchanged, backlog 0), at least 0; a lower bound if a beacon stored but not "
        "yet acknowledged at power-off is still queued on its terminal (beacons.still_queued; "
        "acked_minus_stored < 0 shows such beacons)",
    }
    return {"compression": compressed, "setup": setup}


def summarise(args: argparse.Namespace, org: str, m: Measured) -> dict[str, Any]:
    sampler, report = m.sampler, m.report
    b, fw = report["beacons"], report["firmware"]
    start, end = sampler.start_sample, sampler.end_sample
    if start is None or end is None:
        raise RuntimeError("the fleet never reached its measured window (no RSS start/end)")
    acked, stored = int(b.get("acked", 0)), int(m.settled["rows"])
    lost = max(0, acked - stored)
    rss_start, rss_end = float(start["rss_mb"]), float(end["rss_mb"])
    change = round(100.0 * (rss_end - rss_start) / rss_start, 1)
    compression = NOMINAL_INTERVAL_S / args.beacon_interval
    simulated_h = int(b.get("taken", 0)) / (args.terminals * 3600.0 / NOMINAL_INTERVAL_S)
    targets: dict[str, dict[str, Any]] = {
        "lost": {"target": 0, "value": lost, "met": lost == 0},
        "rss_end_within_pct_of_start": {
            "target": RSS_TARGET_PCT,
            "value": change,
            "met": abs(change) <= RSS_TARGET_PCT,
        },
    }
    result: dict[str, Any] = {
        "terminals": args.terminals,
        "simulated_hours": round(simulated_h, 3),
        "simulated_hours_window_only": round(args.window * compression / 3600.0, 3),
        "traffic_real_seconds": round(m.fleet_s, 1),
        "rss_start_mb": rss_start,
        "rss_end_mb": rss_end,
        "rss_change_pct": change,
        "beacons_sent": acked,
        "beacons_stored": stored,
        "lost": lost,
        "max_backlog": int(sampler.max_backlog),
        "targets": targets,
        "targets_met": all(t["met"] for t in targets.values()),
    }
    result |= describe(args, org, m.workers, sampler.backlog_reads)
    final = sampler.last_metrics
    result["beacons"] = b | {
        "rows_settled": stored,
        "rows_after_gateway_stop": m.rows_after_stop,
        "settle_s": m.settled["settle_s"],
        "acked_minus_stored": acked - stored,
        "gateway_received": sum(family(final, "xixin_beacons_received_total").values()),
        "gateway_rejected": family(final, "xixin_beacons_rejected_total"),
        "gateway_filtered": family(final, "xixin_positions_filtered_total"),
        "journal_items_max": sampler.max_journal,
        "max_backlog_at_s": sampler.max_backlog_at_s,
    }
    result["traffic"] = {
        "presses": fw.get("presses"),
        "grants": fw.get("grants"),
        "queued": fw.get("queued"),
        "denied": sum(fw.get("denied", {}).values()),
        "no_reply": fw.get("no_reply"),
        "bursts_sent": fw.get("bursts_sent"),
        "bursts_nominal_for_simulated_hours": round(
            args.terminals * args.presses_per_h * simulated_h
        ),
        "frames_sent": fw.get("frames_sent"),
        "frames_heard": fw.get("frames_received"),
        "frame_loss_pct": report["frame_loss_pct"],
        "outages": fw.get("outages"),
        "connected_at_end": report["connected_at_end"],
        "access_p95_ms": report["percentiles"].get("access_ms", {}).get("p95"),
        "fleet_cpu_pct_per_process": report["cpu_pct_per_process"],
        "fleet_loop_lag_p99_ms": report["loop_lag_p99_ms"],
        "frames_relayed_by_gateway": final.get("xixin_frames_relayed_total"),
        "broker_messages_dropped": final.get("xixin_broker_messages_dropped_total"),
    }
    seconds = max(1.0, m.fleet_s)
    result["cpu"] = {
        name: {"cpu_s": round(value, 1), "cores": round(value / seconds, 2)}
        for name, value in m.cpu.items()
    } | {"machine_busy_pct": m.machine_busy_pct}
    running = [s for s in sampler.series if s["phase"] == "running" and s.get("rss_mb")]
    half = running[len(running) // 2 :]
    result["memory"] = {
        "rss_idle_mb": m.idle["rss_mb"],
        "rss_start_mb": rss_start,
        "rss_end_mb": rss_end,
        "rss_after_fleet_settled_mb": m.settled_sample["rss_mb"],
        "rss_peak_mb_vmhwm": m.settled_sample.get("hwm_mb"),
        "anon_start_end_mb": [start.get("rss_anon_mb"), end.get("rss_anon_mb")],
        "file_start_end_mb": [start.get("rss_file_mb"), end.get("rss_file_mb")],
        "slope_mb_per_real_h_window": slope_mb_per_h([(s["t_s"], s["rss_mb"]) for s in running]),
        "slope_mb_per_real_h_second_half": slope_mb_per_h([(s["t_s"], s["rss_mb"]) for s in half]),
        "gauges_changed_start_to_end": growth(sampler.start_metrics, sampler.end_metrics),
    }
    result["gateway"] = {"exit_code": m.exit_code, "log": m.log_counts}
    result["rss_samples"] = sampler.series
    result["faults_bench_seen_during_run"] = sampler.faults_seen
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    org = f"synthetic:{math.ceil(args.terminals / GRID_SIZE)}"
    work = Path(tempfile.mkdtemp(prefix="xixin-soak-"))
    gateway = Gateway(work, org)
    began = time.monotonic()
    try:
        measured = measure(args, gateway, org)
    finally:
        gateway.stop()
        if args.keep:
            print(f"soak: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    result: dict[str, Any] = {"benchmark": "soak", "quick": args.quick}
    result |= summarise(args, org, measured)
    result["real_seconds"] = round(time.monotonic() - began, 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 terminals, <= 2 minutes")
    parser.add_argument("--terminals", type=int, help="fleet size (default 500; quick 100)")
    parser.add_argument(
        "--window", type=float, help="measured real seconds (default 720; quick 60)"
    )
    parser.add_argument(
        "--warmup", type=float, help="real seconds before rss_start (default 60; quick 15)"
    )
    parser.add_argument("--beacon-interval", type=float, default=1.0, help="seconds (default 1)")
    parser.add_argument(
        "--presses-per-h",
        type=float,
        default=4.0,
        help="PTT presses per terminal per simulated hour",
    )
    parser.add_argument(
        "--outages-per-h", type=float, default=0.5, help="outages per terminal per simulated hour"
    )
    parser.add_argument("--processes", type=int, default=1, help="fleet worker processes")
    parser.add_argument(
        "--sample-every", type=float, help="seconds between kept samples (30; quick 5)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.terminals = args.terminals or (100 if args.quick else 500)
    args.window = args.window or (60.0 if args.quick else 720.0)
    args.warmup = args.warmup if args.warmup is not None else (15.0 if args.quick else 60.0)
    args.sample_every = args.sample_every or (5.0 if args.quick else 30.0)
    out = args.out or ROOT / "bench" / "results" / ("tmp" if args.quick else "") / "soak.json"
    logging.basicConfig(level=logging.ERROR)
    before = machine()
    result = run(args)
    result["machine_before"] = before
    result["machine_after"] = machine()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    t = result["targets"]
    rss_met = "met" if t["rss_end_within_pct_of_start"]["met"] else "MISSED"
    print(
        f"soak: {result['terminals']} terminals, {result['simulated_hours']} simulated h in "
        f"{result['real_seconds']} s; beacons sent {result['beacons_sent']}, stored "
        f"{result['beacons_stored']}, lost {result['lost']} "
        f"({'met' if t['lost']['met'] else 'MISSED'}); max backlog {result['max_backlog']}; "
        f"gateway RSS {result['rss_start_mb']} -> {result['rss_end_mb']} MB "
        f"({result['rss_change_pct']:+} %, {rss_met})"
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
