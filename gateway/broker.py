"""The managed mosquitto broker: a child process on a loopback port with a generated config."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from gateway.errors import GatewayError
from gateway.locks import release_lock, take_lock
from transport.address import BrokerAddress

log = logging.getLogger(__name__)

INSTALL_HINT = "apt-get install -y mosquitto (or: bash scripts/bootstrap.sh setup)"
# sun_path holds 108 bytes with the terminating NUL on Linux.
UNIX_PATH_MAX = 107


class BrokerError(GatewayError):
    """The broker could not be started, reached or stopped."""


class BrokerUnavailableError(BrokerError):
    """The broker is down, unreachable, or refuses the gateway's account."""


class BrokerNotInstalledError(BrokerError):
    """mosquitto is not on this machine."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_mosquitto() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise BrokerNotInstalledError(f"mosquitto is not installed; install it with: {INSTALL_HINT}")


def process_running(pid: int) -> bool:
    """Alive and not a zombie waiting for its parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


class ManagedBroker:
    """mosquitto as a child process, stopped by its PID.

    Authentication is on when `password_file` is given (the ACL file then applies too); without it
    the broker allows anonymous clients, which only tests of the bare broker path use.

    With `local_socket` the broker also listens on a Unix socket in `workdir`, under the same
    accounts and ACL, for the gateway's own connections: a relayed frame crosses the broker
    twice, and at 20k frames/s the socket saved about a quarter of the gateway's CPU and an
    eighth of the broker's against loopback TCP (bench/relay.py --tcp-gateway). Terminals
    always use the TCP listener.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        local_socket: bool = False,
        logger: logging.Logger | None = None,
    ) -> None:
        self.workdir = workdir
        self.host = host
        self.port = port or free_port(host)
        self.password_file = password_file
        self.acl_file = acl_file
        self.local_socket = local_socket
        self.log = logger or log
        self._process: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None

    @property
    def address(self) -> BrokerAddress:
        """The TCP listener terminals use."""
        return BrokerAddress(self.host, self.port)

    @property
    def local_address(self) -> BrokerAddress:
        """The gateway's own way in: the Unix socket when there is one (same auth and ACL)."""
        if not self._unix_listener:
            return self.address
        return BrokerAddress(self.host, self.port, unix_path=str(self.socket_path))

    @property
    def _unix_listener(self) -> bool:
        return self.local_socket and len(os.fsencode(self.socket_path)) <= UNIX_PATH_MAX

    @property
    def socket_path(self) -> Path:
        # Absolute: the broker and every client resolve it the same, whatever their cwd.
        return self.workdir.absolute() / "mosquitto.sock"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def pid_path(self) -> Path:
        """Written while the broker runs, so an operator can find the child we own."""
        return self.workdir / "mosquitto.pid"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def write_config(self) -> Path:
        lines = [
            "per_listener_settings false",
            f"listener {self.port} {self.host}",
            *([f"listener 0 {self.socket_path}"] if self._unix_listener else []),
            f"allow_anonymous {'false' if self.password_file else 'true'}",
            "persistence false",
            # Voice is QoS 0 and bursts of it must not be dropped by a small per-client queue.
            "max_queued_messages 20000",
            "max_inflight_messages 100",
            "max_packet_size 65536",
            "set_tcp_nodelay true",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            # As root mosquitto would switch to the `mosquitto` user, which cannot read our
            # 0600 password file; the managed broker runs as whoever runs the gateway.
            lines.append("user root")
        if self.password_file:
            lines.append(f"password_file {self.password_file}")
        if self.acl_file:
            lines.append(f"acl_file {self.acl_file}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return self.config_path

    def start(self, timeout: float = 10.0) -> None:
        executable = find_mosquitto()
        if self.local_socket and not self._unix_listener:
            self.log.warning(
                "broker socket path %s is longer than %d bytes; the gateway uses TCP",
                self.socket_path,
                UNIX_PATH_MAX,
            )
        if self._lock_fd is None:
            self._lock_fd = take_lock(
                self.workdir / "broker.lock",
                f"another running gateway owns the broker in {self.workdir}; "
                "stop it first or use another data directory",
            )
        try:
            self._stop_stale()
            # A socket file left by a broker that did not exit cleanly would fail the bind.
            self.socket_path.unlink(missing_ok=True)
            self.write_config()
            self._process = subprocess.Popen(
                [executable, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                # Its own process group: a Ctrl-C in the terminal reaches the gateway, which
                # stops the broker last, not the broker at the same instant (its clients drop).
                process_group=0,
            )
        except BaseException:
            self._release()
            raise
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                pipe = self._process.stderr
                stderr = pipe.read().decode(errors="replace") if pipe else ""
                self.stop()
                raise BrokerError(f"mosquitto exited at start: {stderr.strip()} {self._tail_log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    if self._unix_listener and not self.socket_path.exists():
                        raise OSError("unix listener not bound yet")
                    self.pid_path.write_text(f"{self._process.pid}\n")
                    self.log.info(
                        "mosquitto pid %d listening on %s", self._process.pid, self.address.url
                    )
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on {self.address.url} within {timeout} s")

    def _stop_stale(self, timeout: float = 5.0) -> None:
        """Stop a broker this workdir's pid file names that still runs this config. We hold the
        workdir's lock, so its gateway is gone (SIGKILL, a crash): nothing else will stop it."""
        try:
            pid = int(self.pid_path.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        if os.fsencode(self.config_path) not in cmdline:
            return  # the pid was reused by something else: not ours
        self.log.warning("stopping mosquitto pid %d left running by an earlier gateway", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process_running(pid):
            time.sleep(0.02)
        if process_running(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.pid_path.unlink(missing_ok=True)

    def reload(self) -> None:
        """Re-read the password file and ACL (mosquitto reloads them on SIGHUP)."""
        if self._process and self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGHUP)

    def stop(self, timeout: float = 5.0) -> None:
        try:
            self._stop_process(timeout)
        finally:
            self._release()

    def _release(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        release_lock(fd)

    def _stop_process(self, timeout: float) -> None:
        process, self._process = self._process, None
        self.pid_path.unlink(missing_ok=True)
        self.socket_path.unlink(missing_ok=True)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.log.warning("mosquitto pid %d ignored SIGTERM; killing it", process.pid)
            process.kill()
            process.wait(timeout)
        if process.stderr:
            process.stderr.close()

    def _tail_log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-500:]
        except OSError:
            return ""

    def __enter__(self) -> ManagedBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
