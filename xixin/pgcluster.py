"""A private PostgreSQL cluster for tests and benchmarks: temp dir, loopback port, stopped by PID.

PostgreSQL refuses to run as root, so initdb and the server run as the `postgres` system user
(runuser); the data directory is handed to that user. Nothing here touches the machine's own
cluster or its default port.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from gateway.broker import free_port

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


class PostgresUnavailable(RuntimeError):
    """The postgres binaries (or the postgres user) are not on this machine."""


def find_pg_bin() -> Path:
    for directory in PG_BIN_DIRS:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise PostgresUnavailable("PostgreSQL server binaries not found (apt-get install postgresql)")


class PostgresCluster:
    def __init__(self, base: Path | None = None, *, fsync: bool = False) -> None:
        self.bin = find_pg_bin()
        try:
            self.user = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise PostgresUnavailable("no 'postgres' system user") from exc
        self.base = base or Path(tempfile.mkdtemp(prefix="xixin-pg-"))
        self.data = self.base / "data"
        self.sockets = self.base / "sock"
        self.port = free_port()
        self.fsync = fsync
        self.pid: int | None = None

    def _as_postgres(self, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)

    def start(self) -> PostgresCluster:
        self.base.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            for path in (self.base, self.sockets):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        if not (self.data / "PG_VERSION").exists():
            subprocess.run(
                self._as_postgres(
                    str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust",
                    "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync",
                ),
                check=True, capture_output=True,
            )  # fmt: skip
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
            f"-c fsync={'on' if self.fsync else 'off'} -c shared_buffers=256MB "
            "-c max_wal_size=4GB -c checkpoint_timeout=30min"
        )
        subprocess.run(
            self._as_postgres(
                str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
                "-l", str(self.base / "server.log"), "-w", "-t", "60", "start",
            ),
            check=True, capture_output=True,
        )  # fmt: skip
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if exists is None:
                conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self, timeout: float = 30.0) -> None:
        pid, self.pid = self.pid, None
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGINT)  # "fast" shutdown: roll back clients, then exit
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGQUIT)

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)
