"""The gateway under test in the fault benchmark (bench/faults.py), seen from outside.

`xixin up` as a restartable subprocess with its broker, the database read the way an operator
would (SQLite or PostgreSQL, without the gateway), and what GET /api/health said meanwhile.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import ApiSession
from bench.fault_accounting import fold_problem

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


# ---- what GET /api/health said ----------------------------------------------------------------


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
