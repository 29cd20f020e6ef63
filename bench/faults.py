"""Fault benchmark: what a fault costs a running gateway in beacons, floor events and time.

    python bench/faults.py [--quick] [--only broker_kill,gateway_kill_30s,...] [--out FILE]

Each row starts a real `xixin up` (a subprocess on a fixed --data-dir, a fixed --mqtt-listen
port and a fixed --http-port, its terminals provisioned with `xixin devices import`: the real
password file and ACL), runs a simulated fleet against it in this process (one MQTT connection
per terminal, asyncio clients with the store-and-forward BeaconQueue of protocol §5.5: a fix
every 0.5 s per terminal, a beacon leaves the queue only on its PUBACK), plus one talker per grid
cycling floor request -> grant -> hold -> release, injects one fault, and accounts:

- `beacons_sent`: distinct beacons whose PUBACK the terminal received (acknowledged);
- `beacons_stored`: of those, rows in `positions` (matched by device and fix time), counted at
  the end once every queue is empty and the table has stopped growing (readiness, not a sleep);
- `lost`: acknowledged but never stored (the exact set is compared, not just counts);
- `events_lost`: floor events the terminals observed (each `floor_granted` reply with its burst,
  each `floor_released` reply) with no matching `floor_events` row (event, floor, device, burst;
  compared as multisets, since a gateway restart starts burst ids again);
- `recovery_s`: from the end of the fault to the moment every terminal is connected and has a
  position stored with a fix taken after the fault ended (polled every 0.25 s; the fix period,
  0.5 s, is part of it);
- `health`: what GET /api/health said while the fault lasted and until recovery (polled every
  0.5 s; numbers in problems folded so that one problem is one line), plus the broker's and the
  gateway's warnings from their logs, and the gateway's drop counters from /metrics.

Faults: `broker_kill` (SIGKILL to the managed mosquitto; the gateway's supervisor restarts it),
`gateway_kill_30s` (SIGKILL to `xixin up`, restarted on the same data dir 30 s later: it takes the
broker over with what it queued), `sqlite_locked_30s` (another connection holds BEGIN IMMEDIATE),
`postgresql_down_30s` (`xixin up` on a private PostgreSQL, stopped 30 s), `terminal_offline_60s`
(a quarter of the terminals aborted for 60 s, still taking fixes), `device_flood_10k_per_s` (one
provisioned device floods ctrl/up at 10,000 msg/s for 10 s from another process, while the
talkers keep requesting the floor: `others_access_p95_ms`, request -> grant), `fleet_flush_1000`
(1,000 terminals each flushing 300 stored beacons at once, window 16). --quick: shorter faults,
a 200-terminal flush, results in bench/results/tmp/. Writes bench/results/faults.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


from bench.common import percentile  # noqa: E402
from bench.fault_accounting import TARGETS, fold_problem, lost_beacons, meets, missing, ms  # noqa: E402
from bench.fault_fleet import FIX_PERIOD_S, Fleet, flood_main, plan_devices  # noqa: E402
from bench.fault_gateway import Gateway, HealthLog, Reader, alive, operator_view  # noqa: E402
from firmware_sim.deployment import raise_fd_limit  # noqa: E402
from gateway.broker import free_port  # noqa: E402
from transport.loop import run_event_loop  # noqa: E402

# Re-exported: tests/bench/test_faults.py reads the accounting through this module.
__all__ = ["fold_problem", "lost_beacons", "main", "meets", "missing", "ms"]

POLL_S = 0.25
FAULTS = [
    "broker_kill",
    "gateway_kill_30s",
    "sqlite_locked_30s",
    "postgresql_down_30s",
    "terminal_offline_60s",
    "device_flood_10k_per_s",
    "fleet_flush_1000",
]


@dataclass(frozen=True, slots=True)
class Plan:
    quick: bool
    terminals: int = 100
    fault_s: float = 30.0
    offline_s: float = 60.0
    flood_s: float = 10.0
    flood_rate: int = 10_000
    flush_terminals: int = 1000
    flush_beacons: int = 300
    warmup_s: float = 5.0

    @staticmethod
    def make(quick: bool) -> Plan:
        if quick:
            return Plan(True, terminals=40, fault_s=5.0, offline_s=8.0, flood_s=4.0,
                        flush_terminals=200, warmup_s=2.0)  # fmt: skip
        return Plan(False)


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    with contextlib.suppress(OSError):
        info["cpu_pressure"] = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    return info


class Row:
    """One fault: a gateway, a fleet, the fault, the accounting."""

    def __init__(self, name: str, plan: Plan, base: Path, ports: tuple[int, int]) -> None:
        self.name, self.plan = name, plan
        self.workdir = base / name
        self.workdir.mkdir(parents=True)
        os.chmod(self.workdir, 0o755)  # the private PostgreSQL (user postgres) works under it
        self.fault_start = time.time()
        self.cluster: Any = None
        db_url = None
        if name == "postgresql_down_30s":
            from xixin.pgcluster import PostgresCluster

            self.cluster = PostgresCluster(self.workdir / "pg", fsync=True).start()
            db_url = self.cluster.create_database("xixin_faults")
        self.gateway = Gateway(self.workdir, ports[0], ports[1], db_url)
        self.reader = Reader(db_url, self.gateway.data_dir / "xixin.db")
        self.result: dict[str, Any] = {"fault": name}
        self.health = HealthLog(self.gateway)

    async def run(self) -> dict[str, Any]:
        flush = self.name == "fleet_flush_1000"
        count = self.plan.flush_terminals if flush else self.plan.terminals
        devices = plan_devices(count, "F")
        extra = [("X0001", "grid-01", "officer")] if self.name == "device_flood_10k_per_s" else []
        try:
            secrets = await asyncio.to_thread(self.gateway.provision, devices + extra)
            await asyncio.to_thread(self.gateway.start)
            threading.Thread(target=self.health.run, daemon=True).start()
            fleet = Fleet(self.gateway.mqtt_port, secrets, devices, talkers=13)
            if self.name == "device_flood_10k_per_s":
                fleet.hold_s, fleet.gap_s = 0.3, 0.3
            self.result.update(terminals=count, talkers=len(fleet.talkers))
            if flush:
                fault_end, recovered = await self.flush(fleet)
            else:
                await fleet.connect()
                fleet.start_traffic()
                await self.storing(fleet, time.time() - 60, timeout=60)
                await asyncio.sleep(self.plan.warmup_s)
                fault_end = await self.inject(fleet, secrets)
                recovered = await self.storing(fleet, fault_end, timeout=180)
            self.result["recovery_s"] = round(recovered - fault_end, 2)
            self.result["health"] = self.health.summary(self.fault_start, recovered + 1.0)
            self.result["operator_sees"] = operator_view(self.result["health"])
            self.result.update(await fleet.drain_and_stop())
            await self.account(fleet)
        finally:
            self.result["gateway_counters"] = await asyncio.to_thread(self.gateway.metrics)
            self.result["logs"] = self.gateway.log_lines()
            self.health.running = False
            await asyncio.to_thread(self.gateway.stop)
            if self.cluster is not None:
                self.cluster.stop()
            self.reader.close()
        self.result["meets"] = meets(self.result)
        self.result["meets_all"] = all(self.result["meets"].values())
        return self.result

    async def storing(self, fleet: Fleet, after: float, timeout: float) -> float:
        """When every terminal is connected and has a fix taken after `after` stored (the flush:
        any fix); the wall time of that poll."""
        deadline = time.monotonic() + timeout
        want = {t.device for t in fleet.terminals}
        while time.monotonic() < deadline:
            newest = await asyncio.to_thread(self.reader.newest, "F")
            now = time.time()
            if (
                newest is not None
                and fleet.connected() == len(fleet.terminals)
                and all(newest.get(d, 0.0) >= after for d in want)
            ):
                return now
            await asyncio.sleep(POLL_S)
        raise TimeoutError(f"{self.name}: terminals not storing {timeout:.0f} s after the fault")

    async def inject(self, fleet: Fleet, secrets: dict[str, str]) -> float:
        """Run the fault; returns its end (wall time)."""
        self.fault_start = time.time()
        self.result["fault_s"] = 0.0
        faults: dict[str, Callable[[Fleet, dict[str, str]], Awaitable[float]]] = {
            "broker_kill": self.broker_kill,
            "gateway_kill_30s": self.gateway_kill,
            "sqlite_locked_30s": self.sqlite_locked,
            "postgresql_down_30s": self.postgresql_down,
            "terminal_offline_60s": self.terminal_offline,
            "device_flood_10k_per_s": self.device_flood,
        }
        return await faults[self.name](fleet, secrets)

    async def broker_kill(self, fleet: Fleet, secrets: dict[str, str]) -> float:
        gw = self.gateway
        pid = gw.broker_pid()
        assert pid is not None, "no mosquitto.pid"
        os.kill(pid, signal.SIGKILL)
        end = time.time()
        with contextlib.suppress(TimeoutError):
            waited = await fleet.until(
                lambda: (gw.broker_pid() or pid) != pid and alive(gw.broker_pid() or pid),
                30,
                "broker restart",
            )
            self.result["broker_restarted_after_s"] = round(waited, 2)
        gw.remember()
        return end

    async def gateway_kill(self, fleet: Fleet, secrets: dict[str, str]) -> float:
        await asyncio.to_thread(self.gateway.kill)
        await asyncio.sleep(self.plan.fault_s)
        self.result["fault_s"] = self.plan.fault_s
        end = time.time()
        started = time.monotonic()
        await asyncio.to_thread(self.gateway.start)
        self.result["gateway_restart_to_serving_s"] = round(time.monotonic() - started, 2)
        return end

    async def sqlite_locked(self, fleet: Fleet, secrets: dict[str, str]) -> float:
        conn = sqlite3.connect(
            self.gateway.data_dir / "xixin.db", timeout=30, isolation_level=None,
            check_same_thread=False,
        )  # fmt: skip
        await asyncio.to_thread(conn.execute, "BEGIN IMMEDIATE")
        self.fault_start = time.time()
        await asyncio.sleep(self.plan.fault_s)
        await asyncio.to_thread(conn.execute, "ROLLBACK")
        conn.close()
        self.result["fault_s"] = self.plan.fault_s
        return time.time()

    async def postgresql_down(self, fleet: Fleet, secrets: dict[str, str]) -> float:
        await asyncio.to_thread(self.cluster.stop)
        await asyncio.sleep(self.plan.fault_s)
        await asyncio.to_thread(self.cluster.start)
        self.result["fault_s"] = round(time.time() - self.fault_start, 1)
        return time.time()

    async def terminal_offline(self, fleet: Fleet, secrets: dict[str, str]) -> float:
        away = fleet.terminals[1::4]
        for t in away:
            t.offline = True
        await asyncio.gather(*(t.client.go_offline() for t in away))
        await asyncio.sleep(self.plan.offline_s)
        for t in away:
            t.client.launch()
            t.offline = False
        self.result["fault_s"] = self.plan.offline_s
        self.result["terminals_offline"] = len(away)
        self.result["beacons_queued_offline"] = sum(
            t.client.beacons.counters.queued_offline for t in away
        )
        return time.time()

    async def device_flood(self, fleet: Fleet, secrets: dict[str, str]) -> float:
        plan = self.plan
        base_from = time.time() - plan.warmup_s
        ctx = multiprocessing.get_context("spawn")
        out: Any = ctx.Queue()
        proc = ctx.Process(
            target=flood_main,
            args=(self.gateway.mqtt_port, "X0001", secrets["X0001"], plan.flood_rate,
                  plan.flood_s, out),
        )  # fmt: skip
        proc.start()
        report = await asyncio.to_thread(out.get, True, plan.flood_s + 60)
        await asyncio.to_thread(proc.join, 10)
        end = time.time()
        self.fault_start = end - report["flood_s"]
        self.result.update(report)
        self.result["fault_s"] = report["flood_s"]
        access = fleet.floor.access
        during = [took for ts, took in access if self.fault_start <= ts <= end]
        before = [took for ts, took in access if base_from <= ts < self.fault_start]
        self.result["others_access_p95_ms"] = ms(percentile(during, 0.95))
        self.result["others_access_samples"] = len(during)
        self.result["others_access_max_ms"] = ms(max(during, default=float("nan")))
        self.result["access_p95_ms_before_flood"] = ms(percentile(before, 0.95))
        return end

    async def flush(self, fleet: Fleet) -> tuple[float, float]:
        """Every terminal starts with `flush_beacons` fixes queued offline (taken before the
        row started), then all connect at once: the fault ends as they start connecting;
        recovered when all are connected and each has something stored."""
        now_ms = int(time.time() * 1000) - 120_000
        per = self.plan.flush_beacons
        for t in fleet.terminals:
            for i in range(per):
                t.client.beacons.take(fleet.fix(t, now_ms - (per - i) * 1000), time.monotonic())
        self.fault_start = time.time()
        self.result["fault_s"] = 0.0
        recovering = asyncio.create_task(self.storing(fleet, 0.0, timeout=300))
        await fleet.connect(timeout=120)
        self.result["connect_all_s"] = round(time.time() - self.fault_start, 2)
        fleet.start_traffic(fixes=False)
        await fleet.until(lambda: fleet.queued() == 0, 300, "flush")
        self.result["flush_acked_s"] = round(time.time() - self.fault_start, 2)
        recovered = await recovering
        total = per * len(fleet.terminals)
        began = time.monotonic()
        while time.monotonic() - began < 300:
            if (await asyncio.to_thread(self.reader.count) or 0) >= total:
                self.result["flush_stored_s"] = round(time.time() - self.fault_start, 2)
                break
            await asyncio.sleep(POLL_S)
        return self.fault_start, recovered

    async def account(self, fleet: Fleet) -> None:
        """Wait until the positions and floor_events tables stop growing, then compare."""
        acked = fleet.acked()
        sent = sum(len(v) for v in acked.values())
        began = time.monotonic()
        last: tuple[int, int] | None = None
        stable_since = time.monotonic()
        while time.monotonic() - began < 180:
            count = await asyncio.to_thread(self.reader.count)
            events = await asyncio.to_thread(self.reader.floor_event_count)
            now = time.monotonic()
            if count is not None and events is not None:
                if (count, events) != last:
                    last, stable_since = (count, events), now
                # Unchanged for 2 s with every acknowledged beacon there, or for 10 s anyway.
                elif (count >= sent and now - stable_since >= 2.0) or now - stable_since >= 10.0:
                    break
            await asyncio.sleep(0.5)
        self.result["settled_s"] = round(time.monotonic() - began, 1)
        stored = await asyncio.to_thread(self.reader.stored_fixes)
        lost = lost_beacons(acked, stored)
        gone = sorted(
            (ts, device)
            for device, times in acked.items()
            for ts in times - stored.get(device, set())
        )
        # Fix times of lost beacons, seconds from the fault's start (the fix is taken, then
        # published at once, so it is about when the broker acknowledged it).
        self.result["lost_examples"] = [
            [device, round(ts / 1000 - self.fault_start, 2)] for ts, device in gone[:10]
        ]
        self.result["beacons_sent"] = sent
        self.result["beacons_stored"] = sent - lost
        self.result["lost"] = lost
        self.result["beacons_published"] = sum(
            t.client.beacons.counters.sent for t in fleet.terminals
        )
        self.result["beacons_refused"] = sum(
            t.client.beacons.counters.refused for t in fleet.terminals
        )
        rows = await asyncio.to_thread(self.reader.floor_events)
        observed = fleet.floor.observed
        self.result["floor_requests"] = fleet.floor.requests
        self.result["floor_requests_unanswered"] = fleet.floor.unanswered
        self.result["grants_observed"] = sum(
            n for k, n in observed.items() if k[0] == "floor_granted"
        )
        self.result["releases_observed"] = sum(
            n for k, n in observed.items() if k[0] == "floor_released"
        )
        self.result["events_lost"] = missing(observed, rows)
        gone_events = [k for k, n in observed.items() if n > rows.get(k, 0)]
        # With when the terminal last saw it, in seconds from the fault's start.
        self.result["events_lost_examples"] = [
            [*k, round(fleet.floor.last_seen[k] - self.fault_start, 2)] for k in gone_events[:8]
        ]
        if fleet.floor.access:
            self.result["access_p95_ms_whole_row"] = ms(
                percentile([took for _, took in fleet.floor.access], 0.95)
            )


# ---- main ----------------------------------------------------------------------------------------


async def run_rows(names: list[str], plan: Plan, base: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    ports = (free_port(), free_port())
    for name in names:
        print(f"-- {name}", flush=True)
        began = time.monotonic()
        busy = other_benchmark()
        try:
            row = await Row(name, plan, base, ports).run()
        except Exception as exc:
            row = {"fault": name, "error": f"{type(exc).__name__}: {exc}", "meets_all": False}
        row["wall_s"] = round(time.monotonic() - began, 1)
        row["other_benchmark_running"] = busy or other_benchmark()
        row["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        keys = ("beacons_sent", "beacons_stored", "lost", "events_lost", "recovery_s",
                "others_access_p95_ms", "meets_all", "error", "wall_s")  # fmt: skip
        print("   " + json.dumps({k: row[k] for k in keys if k in row}), flush=True)
        rows.append(row)
    return rows


def other_benchmark() -> bool:
    """Whether another engineer's benchmark (bench/soak.py) is running on this machine."""
    found = subprocess.run(["pgrep", "-f", "bench/soak.py"], capture_output=True, text=True)
    return bool(found.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(FAULTS)}")
    parser.add_argument("--out", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else FAULTS
    unknown = set(names) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults: {', '.join(sorted(unknown))}")
    plan = Plan.make(args.quick)
    out = Path(args.out) if args.out else (
        ROOT / "bench" / "results" / ("tmp" if args.quick else "") / "faults.json"
    )  # fmt: skip
    raise_fd_limit()
    # The terminals' reconnect warnings (hundreds at each fault) would bury the progress lines.
    logging.basicConfig(level=logging.ERROR, format="%(name)s: %(message)s")
    base = Path(tempfile.mkdtemp(prefix="xixin-bench-faults-"))
    os.chmod(base, 0o755)  # the private PostgreSQL runs as `postgres` under it
    before = machine()
    busy = other_benchmark()
    started = time.monotonic()
    try:
        rows = run_event_loop(run_rows(names, plan, base))
    finally:
        if args.keep:
            print(f"work directory kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    report = {
        "benchmark": "faults",
        "quick": args.quick,
        "plan": {
            "terminals": plan.terminals,
            "talkers": 13,
            "fix_period_s": FIX_PERIOD_S,
            "fault_s": plan.fault_s,
            "offline_s": plan.offline_s,
            "flood_s": plan.flood_s,
            "flood_rate_per_s": plan.flood_rate,
            "flush": f"{plan.flush_terminals} x {plan.flush_beacons}",
        },
        "targets": TARGETS,
        "machine_before": before,
        "machine_after": machine(),
        "other_benchmark_running_at_start": busy,
        "other_benchmark_running_in_any_row": busy
        or any(r.get("other_benchmark_running") for r in rows),
        "wall_s": round(time.monotonic() - started, 1),
        "rows": rows,
        "all_meet_targets": all(r.get("meets_all") for r in rows),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out} ({report['wall_s']} s)")


if __name__ == "__main__":
    main()
