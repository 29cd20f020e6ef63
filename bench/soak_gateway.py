"""The gateway process of the soak benchmark (bench/soak.py): `xixin up` provisioned and run
as its own process, and what /proc and /metrics say about it and its children."""

from __future__ import annotations

import contextlib
import csv
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import ApiSession
from firmware_sim.deployment import DeviceSpec

MB = 1024.0 * 1024.0


# ---- the gateway process ----------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM, RssAnon, RssFile, RssShmem (MB) and Threads of a process."""
    out: dict[str, float] = {}
    wanted = {"VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "Threads"}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            number = float(value.split()[0])
            out[key] = number if key == "Threads" else round(number / 1024.0, 1)
    return out


def children(pid: int) -> dict[str, int]:
    """The direct children of a process by role: `mosquitto` and `recorder` (the Python one)."""
    found: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                comm = Path(f"/proc/{child}/comm").read_text().strip()
                found["mosquitto" if comm.startswith("mosquitto") else "recorder"] = int(child)
    return found


def open_files(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)$")


def scrape(api: ApiSession, timeout: float = 5.0) -> dict[str, float]:
    """/metrics as {'name{labels}': value} (signed in: metrics are for admin and centre)."""
    text = api.get("/metrics", timeout=timeout).decode("utf-8")
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = METRIC_LINE.match(line)
        if match and not line.startswith("#"):
            with contextlib.suppress(ValueError):
                values[match.group(1)] = float(match.group(2))
    return values


def family(metrics: dict[str, float], name: str) -> dict[str, float]:
    """One metric family's series, by their label text ('' when unlabelled)."""
    out = {}
    for key, value in metrics.items():
        base, _, labels = key.partition("{")
        if base == name:
            out[labels.rstrip("}")] = value
    return out


class Gateway:
    """`xixin up` as a subprocess of ours, in its own data directory; stopped by its PID."""

    def __init__(self, work: Path, org: str) -> None:
        self.work = work
        self.data_dir = work / "data"
        self.org = org
        self.proc: subprocess.Popen[bytes] | None = None
        self.broker_url = ""
        self.http_url = ""
        self.api: ApiSession | None = None
        self.stdout = work / "up.out"
        self.stderr = work / "up.err"

    def xixin(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "xixin", *args]

    def provision(self, devices: list[tuple[str, str, str]]) -> dict[str, DeviceSpec]:
        """`xixin devices import` of the fleet; its secrets file read back."""
        batch, secrets = self.work / "fleet.csv", self.work / "secrets.csv"
        with batch.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "grid", "role"])
            writer.writerows(devices)
        command = self.xixin(
            "devices", "import", str(batch), "--secrets-out", str(secrets),
            "--data-dir", str(self.data_dir), "--org", self.org, "--log-level", "WARNING",
        )  # fmt: skip
        subprocess.run(command, check=True, cwd=self.work, stdout=subprocess.DEVNULL)
        with secrets.open(encoding="utf-8", newline="") as handle:
            secret = {row["id"]: row["secret"] for row in csv.DictReader(handle)}
        return {d: DeviceSpec(d, unit, role, secret[d]) for d, unit, role in devices}

    def start(self, timeout: float = 90.0) -> None:
        command = self.xixin(
            "up", "--data-dir", str(self.data_dir), "--org", self.org,
            "--mqtt-listen", "127.0.0.1:0", "--http-host", "127.0.0.1", "--http-port", "0",
        )  # fmt: skip
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(command, cwd=self.work, stdout=out, stderr=err)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.stdout.read_text(encoding="utf-8", errors="replace")
            broker = re.search(r"xixin: broker (mqtt://\S+)", text)
            http = re.search(r"console and API on (http://\S+?)/?\s", text)
            if broker and http:
                self.broker_url, self.http_url = broker.group(1), http.group(1)
                port = int(self.http_url.rsplit(":", 1)[1])
                self.api = ApiSession(self.data_dir, port)
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"xixin up exited {self.proc.returncode}: {self.tail()}")
            time.sleep(0.1)
        raise RuntimeError(f"xixin up did not start in {timeout:g} s: {self.tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def tail(self, lines: int = 5) -> str:
        text = (
            self.stderr.read_text(encoding="utf-8", errors="replace")
            if self.stderr.exists()
            else ""
        )
        return " | ".join(text.strip().splitlines()[-lines:])

    def log_counts(self) -> dict[str, Any]:
        """WARNING / ERROR lines the gateway logged, with a few examples."""
        text = self.stderr.read_text(encoding="utf-8", errors="replace")
        out: dict[str, Any] = {}
        for level in ("WARNING", "ERROR", "CRITICAL"):
            lines = [line for line in text.splitlines() if f" {level} " in line]
            out[level.lower()] = len(lines)
            if lines:
                out[f"{level.lower()}_examples"] = [line[:240] for line in lines[:3]]
        return out

    def stop(self, timeout: float = 40.0) -> int | None:
        """SIGTERM (a clean stop, the broker last); SIGKILL past `timeout`, then its broker."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        kids = children(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            for pid in kids.values():  # started by our child, left behind by its SIGKILL
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return self.proc.returncode

    def positions(self) -> int:
        """Rows in the positions table (a read-only connection beside the gateway's)."""
        uri = f"file:{self.data_dir / 'xixin.db'}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as db:
            row = db.execute("SELECT count(*) FROM positions").fetchone()
        return int(row[0])

    def db_mb(self) -> float:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                total += (self.data_dir / f"xixin.db{suffix}").stat().st_size
        return round(total / MB, 1)
