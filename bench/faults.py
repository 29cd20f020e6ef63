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
import csv
import json
import logging
import multiprocessing
import os
import platform
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mqtt5  # noqa: E402

from bench.common import ApiSession, percentile  # noqa: E402
from devices.aio_client import AsyncTerminalClient  # noqa: E402
from devices.beacons import BeaconQueue  # noqa: E402
from devices.client import ClientError  # noqa: E402
from devices.values import Beacon  # noqa: E402
from firmware_sim.deployment import raise_fd_limit  # noqa: E402
from gateway.broker import free_port  # noqa: E402
from protocol import topics  # noqa: E402
from protocol.org import default_org  # noqa: E402
from transport.loop import run_event_loop  # noqa: E402

TARGETS: dict[str, float] = {
    "lost": 0,
    "events_lost": 0,
    "recovery_s": 5.0,
    "others_access_p95_ms": 50.0,
}
FIX_PERIOD_S = 0.5
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


# ---- pure helpers (tested in tests/bench/test_faults.py) -----------------------------------------


def fold_problem(text: str) -> str:
    """A health problem with its numbers replaced by N, so one problem is one line however
    long it lasts ("... for 12 s, 3400 positions waiting" -> "... for N s, N positions ...")."""
    return re.sub(r"\d+(\.\d+)?", "N", text)


def missing(observed: Counter[Any], stored: Counter[Any]) -> int:
    """How many observed items have no stored counterpart (multisets: extra rows are fine)."""
    return sum(max(0, n - stored.get(key, 0)) for key, n in observed.items())


def lost_beacons(acked: dict[str, set[int]], stored: dict[str, set[int]]) -> int:
    """Acknowledged (device -> fix times, ms) with no stored row."""
    return sum(len(times - stored.get(device, set())) for device, times in acked.items())


def ms(value: float) -> float | None:
    """A figure for the JSON: rounded, None for no samples (NaN is not JSON)."""
    return None if value != value else round(value, 1)


def meets(row: dict[str, Any]) -> dict[str, bool]:
    """Each target that applies to the row: met or not (a missing figure is a miss)."""
    out: dict[str, bool] = {}
    for key, limit in TARGETS.items():
        if key == "others_access_p95_ms" and row["fault"] != "device_flood_10k_per_s":
            continue
        value = row.get(key)
        out[key] = isinstance(value, int | float) and value <= limit
    return out


# ---- the gateway under test ----------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """Child processes of `pid`, recursively (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


class Gateway:
    """`xixin up` as a subprocess on a fixed data dir and fixed ports, restartable."""

    def __init__(self, workdir: Path, mqtt_port: int, http_port: int, db_url: str | None) -> None:
        self.data_dir = workdir / "data"
        self.log_path = workdir / "xixin-up.log"
        self.mqtt_port, self.http_port, self.db_url = mqtt_port, http_port, db_url
        self.process: subprocess.Popen[bytes] | None = None
        self.api: ApiSession | None = None  # signed in once the gateway first serves
        self.started_pids: set[int] = set()  # every process seen under a `xixin up` we ran
        self.xixin = str(Path(sys.executable).parent / "xixin")

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("XIXIN_DB", None)
        if self.db_url:
            env["XIXIN_DB"] = self.db_url
        return env

    def provision(self, devices: list[tuple[str, str, str]]) -> dict[str, str]:
        """`xixin devices import` into the data dir; returns id -> secret."""
        batch = self.data_dir.parent / "devices.csv"
        secrets = self.data_dir.parent / f"secrets-{len(devices)}.csv"
        with batch.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "grid", "role"])
            writer.writerows(devices)
        subprocess.run(
            [self.xixin, "devices", "import", str(batch), "--secrets-out", str(secrets),
             "--data-dir", str(self.data_dir)],
            check=True, capture_output=True, env=self.env(),
        )  # fmt: skip
        with secrets.open(newline="") as handle:
            return {row["id"]: row["secret"] for row in csv.DictReader(handle)}

    def start(self, timeout: float = 90.0) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [self.xixin, "up", "--data-dir", str(self.data_dir),
             "--mqtt-listen", f"127.0.0.1:{self.mqtt_port}", "--http-port", str(self.http_port)],
            stdout=log, stderr=subprocess.STDOUT, env=self.env(), cwd=self.data_dir.parent,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"xixin up exited {self.process.returncode}: {self.tail()}")
            if serving(self.http_port):
                self.remember()
                if self.api is None:  # its account and token live in the data dir: made once
                    self.api = ApiSession(self.data_dir, self.http_port)
                return
            time.sleep(0.2)
        raise RuntimeError(f"xixin up not serving after {timeout:.0f} s: {self.tail()}")

    def remember(self) -> None:
        if self.process is not None:
            self.started_pids.add(self.process.pid)
            self.started_pids.update(descendants(self.process.pid))
        pid = self.broker_pid()
        if pid:
            self.started_pids.add(pid)

    def broker_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int((self.data_dir / "broker" / "mosquitto.pid").read_text().split()[0])
        return None

    def kill(self) -> None:
        """kill -9 the `xixin up` process (only it: the broker lives on, as after a crash)."""
        assert self.process is not None
        self.remember()
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM (clean stop, broker last), then whatever we started that is left, by PID."""
        if self.process is not None and self.process.poll() is None:
            self.remember()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for pid in sorted(self.started_pids):
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def log_lines(self, limit: int = 12) -> dict[str, Any]:
        """Warnings of the gateway's and the broker's logs: count + distinct (folded) lines."""
        out: dict[str, Any] = {}
        for name, path, pattern in (
            ("gateway_log", self.log_path, r"WARNING|ERROR|CRITICAL|Traceback"),
            ("mosquitto_log", self.data_dir / "broker" / "mosquitto.log",
             r"warn|error|drop|denied|refus|exceed|out of memory|not authori|saving|restor"),
        ):  # fmt: skip
            try:
                text = path.read_text(errors="replace").splitlines()
            except OSError:
                continue
            hits = [line for line in text if re.search(pattern, line, re.IGNORECASE)]
            folded = list(dict.fromkeys(fold_problem(line[:240]) for line in hits))
            out[name] = {"matching_lines": len(hits), "distinct": folded[:limit]}
        return out

    def metrics(self) -> dict[str, float]:
        """Non-zero drop and writer counters of /metrics (for the notes)."""
        wanted = ("xixin_beacons_rejected", "xixin_positions_filtered", "xixin_positions_stored",
                  "xixin_control_rejected", "xixin_writer_", "xixin_beacons_received")  # fmt: skip
        if self.api is None:
            return {}
        try:
            text = self.api.get("/metrics").decode()
        except (OSError, urllib.error.URLError):
            return {}
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith(wanted) and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                if "_created" not in name and float(value):
                    out[name] = float(value)
        return out


def serving(http_port: int) -> bool:
    """The API answers (its unauthenticated health probe)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/health", timeout=2):
            return True
    except (OSError, urllib.error.URLError, ValueError):
        return False


def health(api: ApiSession | None) -> dict[str, Any] | None:
    """The full health report (status and problems), signed in."""
    if api is None:
        return None
    try:
        result: dict[str, Any] = json.loads(api.get("/api/health", timeout=2))
        return result
    except (OSError, urllib.error.URLError, ValueError):
        return None


# ---- the database, read from outside -------------------------------------------------------------


class Reader:
    """Reads positions and floor events the way an operator would, without the gateway."""

    def __init__(self, url: str | None, sqlite_path: Path) -> None:
        self.url, self.sqlite_path = url, sqlite_path
        self._engine: Any = None

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.url is None:
            conn = sqlite3.connect(f"file:{self.sqlite_path}?mode=ro", uri=True, timeout=1)
            try:
                return list(conn.execute(sql, params).fetchall())
            finally:
                conn.close()
        import sqlalchemy

        if self._engine is None:
            self._engine = sqlalchemy.create_engine(
                self.url, pool_pre_ping=True, connect_args={"connect_timeout": 2}
            )
        with self._engine.connect() as conn:
            sql = sql.replace("?", "%s")
            return [tuple(r) for r in conn.exec_driver_sql(sql, params).fetchall()]

    def newest(self, prefix: str) -> dict[str, float] | None:
        """device -> newest stored fix time (s), for the fleet's devices; None if unreadable."""
        try:
            rows = self._rows(
                "SELECT device, MAX(fix_time) FROM positions WHERE device >= ? AND device < ? "
                "GROUP BY device",
                (prefix, prefix + "\x7f"),
            )
        except Exception:
            return None
        return {str(d): float(t) for d, t in rows}

    def count(self) -> int | None:
        try:
            return int(self._rows("SELECT COUNT(*) FROM positions")[0][0])
        except Exception:
            return None

    def stored_fixes(self) -> dict[str, set[int]]:
        out: dict[str, set[int]] = {}
        for device, fix_time in self._rows("SELECT device, fix_time FROM positions"):
            out.setdefault(str(device), set()).add(round(float(fix_time) * 1000))
        return out

    def floor_events(self) -> Counter[tuple[str, str, str, int | None]]:
        rows = self._rows("SELECT event, floor_key, device, burst FROM floor_events")
        return Counter(
            (str(e), str(k).removeprefix("tg:"), str(d), int(b) if b is not None else None)
            for e, k, d, b in rows
            if e in ("floor_granted", "floor_released")
        )

    def floor_event_count(self) -> int | None:
        try:
            return int(self._rows("SELECT COUNT(*) FROM floor_events")[0][0])
        except Exception:
            return None

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


# ---- the fleet -----------------------------------------------------------------------------------


class CountingQueue(BeaconQueue):
    """A BeaconQueue that remembers which fixes (ms) the broker acknowledged."""

    def __init__(self, acked_into: set[int]) -> None:
        super().__init__()
        self.acked_ts = acked_into

    def acked(self, seq: int, ok: bool = True) -> None:
        entry = self._by_seq.get(seq)
        if entry is not None and ok:
            self.acked_ts.add(entry.beacon.ts)
        super().acked(seq, ok)


@dataclass
class Terminal:
    device: str
    grid: str
    client: AsyncTerminalClient
    acked: set[int] = field(default_factory=set)
    step: int = 0
    offline: bool = False


@dataclass
class FloorStats:
    requests: int = 0
    unanswered: int = 0  # no reply within the retries (6 s), or the connection dropped
    observed: Counter[tuple[str, str, str, int | None]] = field(default_factory=Counter)
    last_seen: dict[tuple[str, str, str, int | None], float] = field(default_factory=dict)
    access: list[tuple[float, float]] = field(default_factory=list)  # (time, ms)

    def saw(self, key: tuple[str, str, str, int | None]) -> None:
        self.observed[key] += 1
        self.last_seen[key] = time.time()


class Fleet:
    """Terminals in this process's event loop: fixes every FIX_PERIOD_S, one talker per grid."""

    def __init__(self, port: int, secrets: dict[str, str], devices: list[tuple[str, str, str]],
                 talkers: int, hold_s: float = 0.8, gap_s: float = 0.7) -> None:  # fmt: skip
        self.port = port
        self.terminals: list[Terminal] = []
        for device, grid, _ in devices:
            acked: set[int] = set()
            client = AsyncTerminalClient(
                device, secrets[device], "127.0.0.1", port, beacons=CountingQueue(acked)
            )
            self.terminals.append(Terminal(device, grid, client, acked))
        seen: set[str] = set()
        self.talkers: list[Terminal] = []
        for t in self.terminals:
            if t.grid not in seen and len(self.talkers) < talkers:
                seen.add(t.grid)
                self.talkers.append(t)
        self.hold_s, self.gap_s = hold_s, gap_s
        self.floor = FloorStats()
        self.taking = False
        self.talking = False
        self._tasks: list[asyncio.Task[None]] = []
        centre = default_org().grids
        self._centres = {g: centre[g].centre for g in centre}

    def fix(self, t: Terminal, ts_ms: int) -> Beacon:
        lon, lat = self._centres[t.grid]
        t.step += 1
        jitter = int(t.device[1:]) * 2e-6
        return Beacon(ts=ts_ms, lat=round(lat + jitter + (t.step % 400) * 3e-6, 6),
                      lon=round(lon + jitter, 6), acc=5.0, spd=0.6, crs=0.0, alt=12.0, bat=80,
                      sat=9)  # fmt: skip

    async def connect(self, per_batch: int = 50, timeout: float = 60.0) -> None:
        for i in range(0, len(self.terminals), per_batch):
            for t in self.terminals[i : i + per_batch]:
                t.client.launch()
            await asyncio.sleep(0.05)
        await self.until(lambda: self.connected() == len(self.terminals), timeout, "connect")

    def connected(self) -> int:
        return sum(t.client.is_connected for t in self.terminals)

    async def until(self, cond: Callable[[], bool], timeout: float, what: str) -> float:
        began = time.monotonic()
        while not cond():
            if time.monotonic() - began > timeout:
                raise TimeoutError(f"{what}: not done after {timeout:.0f} s")
            await asyncio.sleep(0.05)
        return time.monotonic() - began

    def start_traffic(self, fixes: bool = True) -> None:
        self.taking, self.talking = fixes, True
        if fixes:
            self._tasks.append(asyncio.create_task(self._fixes()))
        for t in self.talkers:
            self._tasks.append(asyncio.create_task(self._talk(t)))

    async def _fixes(self) -> None:
        tick = time.monotonic()
        while self.taking:
            now_ms = int(time.time() * 1000)
            for t in self.terminals:
                t.client.send_beacon(self.fix(t, now_ms))
            tick += FIX_PERIOD_S
            await asyncio.sleep(max(0.0, tick - time.monotonic()))

    async def _talk(self, t: Terminal) -> None:
        rng = random.Random(t.device)
        await asyncio.sleep(rng.uniform(0, self.gap_s))
        while self.talking:
            if t.offline or not t.client.is_connected:
                await asyncio.sleep(0.1)
                continue
            began = time.monotonic()
            self.floor.requests += 1
            try:
                reply = await t.client.request_floor(tg=t.grid)
            except ClientError:
                self.floor.unanswered += 1
                await asyncio.sleep(0.2)
                continue
            if reply.get("type") == "floor_granted":
                burst = reply.get("burst")
                self.floor.access.append((time.time(), (time.monotonic() - began) * 1000))
                self.floor.saw(("floor_granted", t.grid, t.device, burst))
                await asyncio.sleep(self.hold_s)
            with contextlib.suppress(ClientError):
                if t.client.is_connected:
                    answer = await t.client.release_floor(tg=t.grid)
                    if answer.get("type") == "floor_released":
                        self.floor.saw(("floor_released", t.grid, t.device, None))
            await asyncio.sleep(self.gap_s * rng.uniform(0.7, 1.3))

    def queued(self) -> int:
        return sum(len(t.client.beacons) for t in self.terminals)

    def acked(self) -> dict[str, set[int]]:
        return {t.device: t.acked for t in self.terminals}

    async def drain_and_stop(self, timeout: float = 180.0) -> dict[str, Any]:
        """Stop taking fixes, wait until every queue is empty (all acknowledged), stop."""
        self.taking = False
        began = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await self.until(lambda: self.queued() == 0, timeout, "drain")
        left = self.queued()
        self.talking = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(t.client.stop() for t in self.terminals), return_exceptions=True)
        return {"queues_drained_s": round(time.monotonic() - began, 1), "unacked_at_end": left}


# ---- the device flood (its own process, raw MQTT) ------------------------------------------------


def flood_main(port: int, device: str, secret: str, rate: int, seconds: float, out: Any) -> None:
    """Connect as a provisioned device and publish status_msg on its ctrl/up at `rate`/s (QoS 0),
    paced in 10 ms ticks; downlink bytes are read and discarded."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(mqtt5.ConnectPacket(device, username=device, password=secret.encode(),
                                     clean_start=True, keep_alive=60).write())  # fmt: skip
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("broker closed the flooder's connection before CONNACK")
        data += chunk
        try:
            connack, _ = mqtt5.read(memoryview(data))
        except IndexError:
            continue
        break
    if getattr(connack, "reason_code", None) != mqtt5.ConnAckReasonCode.SUCCESS:
        raise RuntimeError(f"flooder refused: {connack!r}")
    payload = b'{"v":1,"type":"status_msg","id":"flood","code":"x"}'
    per_tick = max(1, rate // 100)
    packet = mqtt5.PublishPacket(topics.ctrl_up(device), payload, qos=mqtt5.QoS.AT_MOST_ONCE)
    blob = packet.write() * per_tick
    sock.setblocking(False)
    sent, began = 0, time.monotonic()
    tick = began
    while time.monotonic() - began < seconds:
        view = memoryview(blob)
        while view:
            try:
                view = view[sock.send(view) :]
            except BlockingIOError:
                time.sleep(0.0005)
        sent += per_tick
        with contextlib.suppress(BlockingIOError):
            sock.recv(1 << 16)
        tick += 0.01
        time.sleep(max(0.0, tick - time.monotonic()))
    elapsed = time.monotonic() - began
    sock.setblocking(True)
    sock.sendall(mqtt5.DisconnectPacket().write())
    sock.close()
    out.put({"flood_sent": sent, "flood_s": round(elapsed, 2), "flood_rate": round(sent / elapsed)})


# ---- one row -------------------------------------------------------------------------------------


@dataclass
class HealthLog:
    gateway: Gateway
    seen: list[tuple[float, dict[str, Any] | None]] = field(default_factory=list)
    running: bool = True

    def run(self) -> None:
        while self.running:
            self.seen.append((time.time(), health(self.gateway.api)))
            time.sleep(0.5)

    def summary(self, start: float, end: float) -> list[dict[str, Any]]:
        """Distinct states (status + one folded problem) seen in [start, end]."""
        states: dict[str, dict[str, Any]] = {}
        for ts, body in self.seen:
            if not start <= ts <= end:
                continue
            if body is None:
                items = [("unreachable", "GET /api/health: no answer")]
            else:
                items = [(str(body.get("status")), p) for p in body.get("problems") or []] or [
                    (str(body.get("status")), "")
                ]
            for status, problem in items:
                key = f"{status}|{fold_problem(problem)}"
                first = round(ts - start, 1)
                new = {"status": status, "problem": problem, "first_s": first, "polls": 0}
                state = states.setdefault(key, new)
                state["last_s"] = round(ts - start, 1)
                state["polls"] += 1
        return list(states.values())


def operator_view(states: list[dict[str, Any]]) -> str:
    """The health states as one line: what an operator polling /api/health saw, when
    (seconds from the fault's start)."""
    parts = []
    for state in states:
        what = state["status"] + (f" ({state['problem']})" if state["problem"] else "")
        parts.append(f"{state['first_s']}-{state['last_s']} s: {what}")
    return "; ".join(parts) or "no poll answered"


def plan_devices(count: int, prefix: str) -> list[tuple[str, str, str]]:
    grids = sorted(default_org().grids)
    return [(f"{prefix}{n + 1:04d}", grids[n % len(grids)], "officer") for n in range(count)]


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
