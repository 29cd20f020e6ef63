"""Helpers the benchmarks share (they run as scripts with the repository root on sys.path)."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, q in (0, 1]: the smallest value with at least q of them at or
    below it (NaN for no values). Every benchmark reports its percentiles with this one."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux); 0 for pid 0 (no process)."""
    if not pid:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuCap:
    """A CPU-bandwidth cgroup of our own (v1 `cpu` or v2 `cpu.max`) capping the processes put
    in it to `cores` of CPU time: on a small machine it makes a worker, not the machine, the
    bottleneck, so that scaling with workers can be seen. Removed by close(); touches nothing
    but the directory it creates."""

    PERIOD_US = 100_000

    def __init__(self, name: str, cores: float) -> None:
        quota = max(1000, round(cores * self.PERIOD_US))
        v1, v2 = Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup")
        if (v1 / "cpu.cfs_quota_us").exists():
            self.path = v1 / name
            self.path.mkdir()
            (self.path / "cpu.cfs_period_us").write_text(str(self.PERIOD_US))
            (self.path / "cpu.cfs_quota_us").write_text(str(quota))
        elif "cpu" in (v2 / "cgroup.controllers").read_text().split():
            self.path = v2 / name
            self.path.mkdir()
            (self.path / "cpu.max").write_text(f"{quota} {self.PERIOD_US}")
        else:
            raise OSError("no CPU bandwidth controller (cgroup v1 cpu or v2 cpu.max)")

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def close(self) -> None:
        """Remove the cgroup once its processes have exited."""
        with contextlib.suppress(OSError):
            self.path.rmdir()

    @staticmethod
    def available() -> bool:
        try:
            CpuCap(f"xixin-probe-{os.getpid()}", 0.5).close()
        except OSError:
            return False
        return True


class ApiSession:
    """A signed-in reader of a running `xixin up`'s API: a centre account made for the
    benchmark in its data directory (password from stdin, never on a command line) and a
    bearer token for it."""

    def __init__(self, data_dir: Path, http_port: int, name: str = "benchmark") -> None:
        import secrets
        import subprocess
        import sys

        self.base = f"http://127.0.0.1:{http_port}"
        self.name = name
        self.password = secrets.token_urlsafe(24)
        subprocess.run(
            [sys.executable, "-m", "xixin", "users", "add", name, "--role", "centre",
             "--data-dir", str(data_dir), "--ask-password", "--log-level", "WARNING"],
            input=self.password + "\n", text=True, capture_output=True, check=True,
        )  # fmt: skip
        self._token: str | None = None

    def _sign_in(self, timeout: float) -> str:
        import json
        import urllib.parse
        import urllib.request

        form = urllib.parse.urlencode({"username": self.name, "password": self.password})
        request = urllib.request.Request(
            self.base + "/api/auth/token", data=form.encode(), method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=timeout) as response:
            token = json.loads(response.read())["access_token"]
        assert isinstance(token, str)
        return token

    def get(self, path: str, timeout: float = 5.0) -> bytes:
        """GET with the bearer token (signing in on first use); raises OSError/URLError."""
        import urllib.request

        if self._token is None:
            self._token = self._sign_in(timeout)
        request = urllib.request.Request(
            self.base + path, headers={"Authorization": f"Bearer {self._token}"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body: bytes = response.read()
        return body
