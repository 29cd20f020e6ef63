"""The managed mosquitto broker: a child process on a loopback port with a generated config."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from gateway.errors import GatewayError
from gateway.locks import release_lock, take_lock
from transport.address import BrokerAddress

log = logging.getLogger(__name__)

INSTALL_HINT = "apt-get install -y mosquitto (or: bash scripts/bootstrap.sh setup)"
# Per client: ~2 M beacons; a whole-fleet flush of 300,000 takes ~60 MB.
MAX_QUEUED_BYTES = 512 << 20
# sun_path holds 108 bytes with the terminating NUL on Linux.
UNIX_PATH_MAX = 107
# A SIGHUP sent while mosquitto reloads is lost: reloads this close together get one more.
RELOAD_SETTLE_S = 0.5


class BrokerError(GatewayError):
    """The broker could not be started, reached or stopped."""


class BrokerUnavailableError(BrokerError):
    """The broker is down, unreachable, or refuses the gateway's account."""


class BrokerNotInstalledError(BrokerError):
    """mosquitto is not on this machine."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A TLS listener's server certificate and key (PEM), and optionally the CA whose client
    certificates it requires (then a terminal needs its certificate *and* its password)."""

    certfile: Path
    keyfile: Path
    client_cafile: Path | None = None


@dataclass(frozen=True, slots=True)
class Listener:
    """A TCP listener terminals connect to; port 0 is any free port, chosen at start."""

    host: str
    port: int
    tls: TlsFiles | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


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


class _Adopted:
    """A broker process we did not start (its gateway was killed) but now own: what
    ManagedBroker uses of a Popen, by pid. Its parent is init, which reaps it."""

    stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not process_running(self.pid):
            self.returncode = -1  # its exit status went to init
        return self.returncode

    def send_signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            time.sleep(0.02)
        return -1

    def terminate_and_wait(self, timeout: float) -> None:
        self.send_signal(signal.SIGTERM)
        try:
            self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


class ManagedBroker:
    """mosquitto as a child process, stopped by its PID.

    Authentication is on when `password_file` is given (the ACL file then applies too); without it
    the broker allows anonymous clients, which only tests of the bare broker path use.

    With `local_socket` the broker also listens on a Unix socket in `workdir`, under the same
    accounts and ACL, for the gateway's own connections: a relayed frame crosses the broker
    twice, and at 20k frames/s the socket saved about a quarter of the gateway's CPU and an
    eighth of the broker's against loopback TCP (bench/relay.py --tcp-gateway). Terminals
    always use the TCP (or TLS) listeners.

    With authentication on, every TCP and TLS listener replaces a client's id with its user
    name (`use_username_as_clientid`): a device can never take over another device's session,
    nor the gateway's, whose connections use the Unix socket only.
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
        listeners: Sequence[Listener] = (),
        logger: logging.Logger | None = None,
    ) -> None:
        """`listeners`, when given, replace the one plain listener on `host`:`port`."""
        self.workdir = workdir
        chosen = list(listeners) or [Listener(host, port or 0)]
        self.listeners = [
            Listener(item.host, item.port or free_port(item.host), item.tls) for item in chosen
        ]
        # Terminals on this machine (the demo fleet, the simulator) use the first plain one.
        self.local = next((item for item in self.listeners if item.tls is None), self.listeners[0])
        self.host, self.port = self.local.host, self.local.port
        self.password_file = password_file
        self.acl_file = acl_file
        self.local_socket = local_socket
        self.log = logger or log
        self._process: subprocess.Popen[bytes] | _Adopted | None = None
        self._lock_fd: int | None = None
        self.restarts = 0  # by restart_if_dead(): the broker died under us
        self.last_exit: str | None = None
        self._reload_lock = threading.Lock()
        self._last_hup = -RELOAD_SETTLE_S
        self._trailing_hup: threading.Timer | None = None

    @property
    def address(self) -> BrokerAddress:
        """The TCP listener local terminals use (the first plain one, else the first)."""
        return BrokerAddress(self.host, self.port, tls=self.local.tls is not None)

    @property
    def local_address(self) -> BrokerAddress:
        """The gateway's own way in: the Unix socket when there is one (same auth and ACL)."""
        if not self._unix_listener:
            return self.address
        return BrokerAddress(self.host, self.port, unix_path=str(self.socket_path))

    @property
    def _unix_listener(self) -> bool:
        return self.local_socket

    @property
    def socket_path(self) -> Path:
        # Absolute: the broker and every client resolve it the same, whatever their cwd.
        path = self.workdir.absolute() / "mosquitto.sock"
        if len(os.fsencode(path)) <= UNIX_PATH_MAX:
            return path
        # sun_path is too short for it: a private directory of its own under /tmp, named after
        # the workdir, so a restart finds it again. The gateway cannot fall back to TCP, where
        # its several connections would share one client id (use_username_as_clientid).
        digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"xixin-broker-{digest}" / "mosquitto.sock"

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

    def _listener_lines(self) -> list[str]:
        lines: list[str] = []
        for item in self.listeners:
            lines.append(f"listener {item.port} {item.host}")
            if item.tls is not None:
                lines += [f"certfile {item.tls.certfile}", f"keyfile {item.tls.keyfile}"]
                lines.append("tls_version tlsv1.2")
                if item.tls.client_cafile is not None:
                    lines += [f"cafile {item.tls.client_cafile}", "require_certificate true"]
            if self.password_file:
                # The client id is the authenticated user: no device can disconnect another.
                lines.append("use_username_as_clientid true")
        if self._unix_listener:
            lines.append(f"listener 0 {self.socket_path}")
        return lines

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text(), encoding="utf-8")
        return self.config_path

    def config_text(self) -> str:
        lines = [
            "per_listener_settings false",
            f"allow_anonymous {'false' if self.password_file else 'true'}",
            # Sessions and the messages queued for them (the gateway's ingest while it is away)
            # survive a broker restart: saved every second and at exit.
            "persistence true",
            f"persistence_location {self.workdir.absolute()}/",
            "autosave_interval 1",
            # A queue is bounded by bytes, not by a message count: a whole fleet flushing its
            # offline beacons at once (1,000 x 300) must fit the ingest session's queue, and
            # voice (QoS 0) bursts must not be dropped by a small per-client queue.
            # (mosquitto 2.0.11 delivers nothing at QoS 1 with "max_queued_messages 0", which
            # its manual calls "no maximum": a count too large to matter instead.)
            "max_queued_messages 100000000",
            f"max_queued_bytes {MAX_QUEUED_BYTES}",
            # QoS 1 messages unacknowledged at once per client: the ingest acknowledges beacons
            # only once they are stored (tens of ms later), so it needs a wide window.
            "max_inflight_messages 20000",
            "sys_interval 1",  # $SYS counters the gateway watches (broker_stats.py)
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
        # Listener options apply to the listener line above them: listeners come last.
        lines += self._listener_lines()
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> None:
        if self.local_socket:
            self.socket_path.parent.mkdir(mode=0o700, exist_ok=True)
        if self._lock_fd is None:
            self._lock_fd = take_lock(
                self.workdir / "broker.lock",
                f"another running gateway owns the broker in {self.workdir}; "
                "stop it first or use another data directory",
            )
        try:
            if self._adopt_stale():
                return
            self._check_ports_free()
            self.write_config()
            self._spawn()
        except BaseException:
            self._release()
            raise
        self._wait_listening(timeout)

    def _check_ports_free(self) -> None:
        """One clear line for a listener port already taken (another broker, another gateway),
        rather than mosquitto's exit."""
        for item in self.listeners:
            family = socket.AF_INET6 if ":" in item.host else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((item.host, item.port))
                except OSError as exc:
                    raise BrokerError(
                        f"cannot listen for terminals on {item.url}: {os.strerror(exc.errno or 0)}"
                        " (another broker or gateway?); choose another --mqtt-listen"
                    ) from exc

    def _spawn(self) -> None:
        executable = find_mosquitto()
        # A socket file left by a broker that did not exit cleanly would fail the bind.
        self.socket_path.unlink(missing_ok=True)
        self._process = subprocess.Popen(
            [executable, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # Its own process group: a Ctrl-C in the terminal reaches the gateway, which
            # stops the broker last, not the broker at the same instant (its clients drop).
            process_group=0,
        )

    def _wait_listening(self, timeout: float) -> None:
        assert self._process is not None  # _spawn() just made it
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                pipe = self._process.stderr
                stderr = pipe.read().decode(errors="replace") if pipe else ""
                self.stop()
                raise BrokerError(f"mosquitto exited at start: {stderr.strip()} {self._tail_log()}")
            if self._listening():
                self.pid_path.write_text(f"{self._process.pid}\n")
                self.log.info(
                    "mosquitto pid %d listening on %s",
                    self._process.pid,
                    ", ".join(item.url for item in self.listeners),
                )
                return
            time.sleep(0.02)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on {self.address.url} within {timeout} s")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def restart_if_dead(self, timeout: float = 10.0) -> bool:
        """Supervision: if the broker we started has exited (killed, crashed), start it again
        on the same listeners and config, keeping its persistence file; True if it did."""
        process = self._process
        if process is None or process.poll() is None:
            return False
        self.restarts += 1
        self.last_exit = f"exit status {process.returncode}"
        if process.stderr:
            process.stderr.close()
        self.log.warning(
            "mosquitto pid %d stopped (%s); restarting it (restart %d)",
            process.pid,
            self.last_exit,
            self.restarts,
        )
        self._spawn()
        self._wait_listening(timeout)
        return True

    def _listening(self) -> bool:
        """Every listener accepts connections (the Unix socket exists)."""
        if self._unix_listener and not self.socket_path.exists():
            return False
        for item in self.listeners:
            try:
                with socket.create_connection((item.host, item.port), timeout=0.2):
                    pass
            except OSError:
                return False
        return True

    def _stale_pid(self) -> int | None:
        """The broker this workdir's pid file names, if it still runs this workdir's config."""
        try:
            pid = int(self.pid_path.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        if os.fsencode(self.config_path) not in cmdline:
            return None  # the pid was reused by something else: not ours
        return pid

    def _adopt_stale(self) -> bool:
        """A broker left running by an earlier gateway (SIGKILL, a crash: we hold the workdir's
        lock, so that gateway is gone). If it runs exactly the config we would write, take it
        over: it keeps the sessions and messages it queued for us meanwhile. Otherwise stop it.
        True if adopted."""
        pid = self._stale_pid()
        if pid is None:
            return False
        try:
            same = self.config_path.read_text(encoding="utf-8") == self.config_text()
        except OSError:
            same = False
        if same and self._listening():
            self.log.warning("taking over mosquitto pid %d left running by an earlier gateway", pid)
            self._process = _Adopted(pid)
            self.reload()  # accounts may have changed since it read them
            return True
        self.log.warning("stopping mosquitto pid %d left running by an earlier gateway", pid)
        _Adopted(pid).terminate_and_wait(5.0)
        self.pid_path.unlink(missing_ok=True)
        return False

    def reload(self) -> None:
        """Re-read the password file and ACL (mosquitto reloads them on SIGHUP).

        mosquitto clears its reload flag only after reloading, so a SIGHUP that arrives while
        it reloads is lost, and the files it read may miss the last change (a device added
        right after another stays refused). So a reload within RELOAD_SETTLE_S of the previous
        SIGHUP is sent at once, as before, and once more when things have been quiet that long.
        """
        with self._reload_lock:
            recent = time.monotonic() - self._last_hup < RELOAD_SETTLE_S
            self._hup()
            if recent and self._trailing_hup is None:
                self._schedule_trailing(RELOAD_SETTLE_S)

    def _schedule_trailing(self, delay: float) -> None:
        self._trailing_hup = threading.Timer(delay, self._trailing_reload)
        self._trailing_hup.daemon = True
        self._trailing_hup.start()

    def _trailing_reload(self) -> None:
        with self._reload_lock:
            quiet_for = time.monotonic() - self._last_hup
            if quiet_for < RELOAD_SETTLE_S:  # another SIGHUP since: wait until it settled
                self._schedule_trailing(RELOAD_SETTLE_S - quiet_for)
                return
            self._trailing_hup = None
            self._hup()

    def _hup(self) -> None:
        self._last_hup = time.monotonic()
        if self._process and self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGHUP)

    def stop(self, timeout: float = 5.0) -> None:
        with self._reload_lock:
            if self._trailing_hup is not None:
                self._trailing_hup.cancel()
                self._trailing_hup = None
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
