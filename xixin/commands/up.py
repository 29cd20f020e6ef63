"""`xixin up`: broker + database + gateway + API/console, the main job."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.alarms.queue import ESCALATE_AFTER_S, AlarmPolicy
from gateway.broker import Listener, TlsFiles
from gateway.certs import SERVER_CERT, SERVER_KEY
from gateway.control.commands import ACK_TIMEOUT_S
from gateway.errors import ConfigError, GatewayError
from gateway.floor import FloorConfig
from gateway.retention import RetentionPolicy
from gateway.service import GatewayService, ServiceConfig
from gateway.store.db import redacted_url
from transport.loop import freeze_startup_heap, run_event_loop
from xixin.errors import EXPECTED_OR_OS_ERRORS, one_line
from xixin.options import (
    DURATION_HELP,
    add_database,
    add_gateway_account,
    add_org,
    data_dir_option,
    database_url,
    duration,
    gateway_password,
    host_port,
    org_file,
)

if TYPE_CHECKING:
    import uvicorn

    from firmware_sim.demo_fleet import DemoFleet
    from transport.address import BrokerAddress

# Terminals on this machine; the whole network with --mqtt-listen 0.0.0.0:1883 (or TLS).
DEFAULT_MQTT_LISTEN = "127.0.0.1:1883"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = subparsers.add_parser(
        "up", help="run broker + database + gateway + API/console (the main job)"
    )
    up.add_argument("--demo", action="store_true", help="also start a few simulated terminals")
    up.add_argument(
        "--duration", type=duration, help=f"stop after this long ({DURATION_HELP}; default: never)"
    )
    data_dir_option(up)
    add_database(up)
    add_org(up)
    up.add_argument(
        "--mqtt-listen",
        type=host_port,
        action="append",
        metavar="HOST:PORT",
        help="a plain MQTT listener of the managed broker for terminals, repeatable "
        f"(default {DEFAULT_MQTT_LISTEN}; 0.0.0.0:1883 for the whole network; port 0: any free)",
    )
    up.add_argument(
        "--mqtt-tls-listen",
        type=host_port,
        action="append",
        metavar="HOST:PORT",
        help="an MQTT-over-TLS listener, repeatable, e.g. 0.0.0.0:8883 (certificates: "
        "`xixin certs init`, or --tls-cert/--tls-key)",
    )
    up.add_argument(
        "--tls-cert",
        type=Path,
        help="server certificate, PEM (default: DATA_DIR/tls/server.pem from `xixin certs init`)",
    )
    up.add_argument(
        "--tls-key", type=Path, help="its private key, PEM (default: DATA_DIR/tls/server.key)"
    )
    up.add_argument(
        "--tls-client-ca",
        type=Path,
        help="require terminals on the TLS listeners to show a client certificate of this CA, "
        "PEM (`xixin certs client` makes them; the password is still required)",
    )
    up.add_argument("--broker", help="use an external MQTT 5 broker, mqtt(s)://host:port")
    add_gateway_account(up, "on an external broker")
    up.add_argument(
        "--http-host",
        default="127.0.0.1",
        help="address of the console and API (default 127.0.0.1)",
    )
    up.add_argument(
        "--http-port", type=int, default=8080, help="port of the console and API (0: any free one)"
    )
    up.add_argument(
        "--http-tls",
        action="store_true",
        help="serve the console and API over HTTPS with the TLS certificate (--tls-cert/--tls-key, "
        "default DATA_DIR/tls/server.pem from `xixin certs init`)",
    )
    up.add_argument(
        "--http-insecure",
        action="store_true",
        help="allow plain HTTP on an address beyond this machine (passwords and sessions then "
        "cross the network in clear); without it such an --http-host needs --http-tls",
    )
    up.add_argument(
        "--http-allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a further Host name the console answers to (repeatable; the listening address, "
        "loopback names and, on 0.0.0.0, this machine's name are allowed already)",
    )
    up.add_argument(
        "--max-burst",
        type=duration,
        default=30.0,
        help=f"longest talk burst before the floor is taken back ({DURATION_HELP}; default 30s)",
    )
    up.add_argument("--no-queue", action="store_true", help="deny instead of queueing")
    up.add_argument(
        "--recordings-keep-days",
        type=float,
        default=None,
        metavar="DAYS",
        help="delete recordings older than this (audited; default: keep)",
    )
    up.add_argument(
        "--recordings-max-mb",
        type=float,
        default=None,
        metavar="MB",
        help="delete the oldest recordings while they take more disk than this (audited)",
    )
    up.add_argument(
        "--map-tiles",
        type=_tile_url,
        metavar="URL",
        help="a map tile server for the console, e.g. https://tiles.example/{z}/{x}/{y}.png "
        "(default none: the organisation's grid polygons only, which needs no network)",
    )
    up.add_argument(
        "--map-attribution", default="", help="the tile server's attribution text on the map"
    )
    up.add_argument(
        "--sos-escalate-after",
        type=duration,
        default=ESCALATE_AFTER_S,
        help="an SOS nobody acknowledged goes up a tier (grid, area, centre) after this long, "
        f"and again after each further period ({DURATION_HELP}; default "
        f"{ESCALATE_AFTER_S:g}s; 0 never)",
    )
    up.add_argument(
        "--command-ack-timeout",
        type=duration,
        default=ACK_TIMEOUT_S,
        help="a command sent to an online terminal and not acknowledged within this long is "
        f"timed_out ({DURATION_HELP}; default {ACK_TIMEOUT_S:g}s)",
    )
    up.set_defaults(handler=cmd_up)


def _retention(args: argparse.Namespace) -> RetentionPolicy:
    max_mb = args.recordings_max_mb
    try:
        return RetentionPolicy(
            keep_days=args.recordings_keep_days,
            max_bytes=None if max_mb is None else int(max_mb * 1_000_000),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _tile_url(text: str) -> str:
    from gateway.api.console_settings import TileUrlError, check_tile_url

    try:
        return check_tile_url(text)
    except TileUrlError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _listeners(args: argparse.Namespace) -> list[Listener]:
    plain = args.mqtt_listen or [host_port(DEFAULT_MQTT_LISTEN)]
    listeners = [Listener(host, port) for host, port in plain]
    if args.mqtt_tls_listen:
        tls_dir = args.data_dir / "tls"
        files = TlsFiles(
            args.tls_cert or tls_dir / SERVER_CERT,
            args.tls_key or tls_dir / SERVER_KEY,
            args.tls_client_ca,
        )
        for path in (files.certfile, files.keyfile, files.client_cafile):
            if path is not None and not path.is_file():
                raise ConfigError(
                    f"TLS file {path} not found: run `xixin certs init --data-dir "
                    f"{args.data_dir} --host NAME` or give --tls-cert and --tls-key"
                )
        listeners += [Listener(host, port, files) for host, port in args.mqtt_tls_listen]
    return listeners


def _http_tls_files(args: argparse.Namespace) -> tuple[Path, Path] | None:
    """The HTTPS certificate and key, or None for plain HTTP; refuses plain HTTP beyond this
    machine unless --http-insecure (ConfigError)."""
    if not args.http_tls:
        if not ipaddress_is_loopback(args.http_host) and not args.http_insecure:
            raise ConfigError(
                f"--http-host {args.http_host} serves beyond this machine: sign-in passwords and "
                "sessions would cross the network in clear; add --http-tls (certificates: "
                "`xixin certs init`) or, knowingly, --http-insecure"
            )
        return None
    tls_dir = args.data_dir / "tls"
    cert, key = args.tls_cert or tls_dir / SERVER_CERT, args.tls_key or tls_dir / SERVER_KEY
    for path in (cert, key):
        if not path.is_file():
            raise ConfigError(
                f"TLS file {path} not found: run `xixin certs init --data-dir {args.data_dir} "
                "--host NAME` or give --tls-cert and --tls-key"
            )
    return cert, key


def _accounts_banner(service: GatewayService, demo: bool) -> list[str]:
    """The first start's administrator (and the demo's accounts): their passwords, shown once."""
    accounts = service.accounts
    lines: list[str] = []
    if accounts.count() == 0:
        _, password = accounts.add("admin", "admin")
        lines += [
            "xixin: first start: created the administrator account 'admin' with password",
            f"  {password}",
            "xixin: (shown only this once; only an argon2id hash is stored; "
            "`xixin users reset admin` makes a new one)",
        ]
    if demo:
        from xixin.demo import DEMO_ACCOUNTS, provision_demo_accounts

        roles = dict(DEMO_ACCOUNTS)
        for name, password in provision_demo_accounts(accounts).items():
            lines.append(f"xixin: demo account {name} ({roles[name]}) password {password}")
    return lines


def cmd_up(args: argparse.Namespace) -> int:
    try:
        tls_files = _http_tls_files(args)
        retention = _retention(args)
    except ConfigError as exc:
        print(f"xixin up: {exc}", file=sys.stderr)
        return 2
    config = ServiceConfig(
        data_dir=args.data_dir,
        db_url=database_url(args, required=False),
        broker_url=args.broker,
        gateway_user=args.gateway_user,
        gateway_password=gateway_password(args.gateway_password_file),
        floor=FloorConfig(max_burst_s=args.max_burst, queue_enabled=not args.no_queue),
        retention=retention,
        alarms=AlarmPolicy(escalate_after_s=args.sos_escalate_after or None),
        command_ack_timeout_s=args.command_ack_timeout,
    )
    try:
        # First, so a port in use stops us before anything is started or written.
        http = _listen(args.http_host, args.http_port)
    except OSError as exc:
        print(
            f"xixin up: cannot serve the console and API on {args.http_host}:{args.http_port}: "
            f"{os.strerror(exc.errno) if exc.errno else exc}; choose another --http-port",
            file=sys.stderr,
        )
        return 2
    service: GatewayService | None = None
    try:
        # After the port check: a synthetic org is written into the data directory.
        config.org_path = org_file(args.org, args.data_dir)
        config.listeners = _listeners(args)
        service = GatewayService(config)
        secrets: dict[str, str] = {}
        if args.demo:
            from xixin.demo import provision_demo_devices

            secrets = provision_demo_devices(service.migrate(), config.data_dir)
        service.migrate()
        banner = _accounts_banner(service, args.demo)
        service.prepare()
    except EXPECTED_OR_OS_ERRORS as exc:  # BrokerNotInstalledError included
        http.close()
        if service is not None:
            service.close()  # a broker prepare() started, the data directory's lock
        print(f"xixin up: {one_line(exc)}", file=sys.stderr)
        return 2
    try:
        return run_event_loop(_serve(service, args, secrets, http, tls_files, banner))
    except KeyboardInterrupt:
        return 0
    finally:
        http.close()
        service.close()


def ipaddress_is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _listen(host: str, port: int) -> socket.socket:
    """The console's listening socket (port 0: any free one; the banner shows which)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


async def _serve(
    service: GatewayService,
    args: argparse.Namespace,
    secrets: dict[str, str],
    http: socket.socket,
    tls_files: tuple[Path, Path] | None = None,
    banner: list[str] | None = None,
) -> int:
    import uvicorn

    from gateway.api import create_app
    from gateway.api.console_settings import ConsoleSettings
    from gateway.api.security import HttpSecurity, allowed_hosts_for

    runner = service.runner
    assert runner is not None
    try:
        await runner.check_broker()
    except GatewayError as exc:
        print(f"xixin up: {one_line(exc)}", file=sys.stderr)
        return 2
    security = HttpSecurity(
        allowed_hosts=allowed_hosts_for(args.http_host, args.http_allowed_host),
        tls=tls_files is not None,
    )
    console = ConsoleSettings(map_tiles=args.map_tiles, map_attribution=args.map_attribution)
    app = create_app(service, security, console)
    server = _http_server(
        uvicorn.Config(
            app, host=args.http_host, port=args.http_port, log_level="warning", lifespan="on",
            ssl_certfile=tls_files[0] if tls_files else None,
            ssl_keyfile=tls_files[1] if tls_files else None,
        )
    )  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _on_stop_signal, stop, server)
    serving = asyncio.create_task(server.serve(sockets=[http]))
    while not server.started:
        if serving.done():
            serving.result()
            print("xixin up: the HTTP server did not start", file=sys.stderr)
            return 2
        await asyncio.sleep(0.05)
    freeze_startup_heap()  # the gateway and the app are up: keep full collections short
    # Terminals use the TCP listener; the gateway may sit on the managed broker's Unix socket.
    terminals_broker = service.broker.address if service.broker else runner.settings.broker
    where_terminals = (
        "  ".join(item.url for item in service.broker.listeners)
        if service.broker
        else terminals_broker.url
    )
    print(f"xixin: broker {where_terminals}  database {redacted_url(service.db_url)}")
    for item in service.broker.listeners if service.broker else []:
        if item.tls is None and not ipaddress_is_loopback(item.host):
            print(
                f"xixin: warning: {item.url} is plain MQTT beyond this machine: terminal "
                "passwords cross the network in clear (use --mqtt-tls-listen)",
                file=sys.stderr,
            )
    host, port = http.getsockname()[:2]
    where = f"[{host}]" if ":" in host else host
    scheme = "https" if tls_files else "http"
    print(f"xixin: console and API on {scheme}://{where}:{port}/  (Ctrl-C stops; sign in)")
    if tls_files is None and not ipaddress_is_loopback(args.http_host):
        print(
            f"xixin: warning: the console on {args.http_host} is plain HTTP beyond this machine "
            "(--http-insecure): passwords and sessions cross the network in clear",
            file=sys.stderr,
        )
    for line in banner or []:
        print(line, flush=True)
    fleet, dispatcher = (
        _start_demo(service, terminals_broker, secrets) if args.demo else (None, None)
    )
    started = last_report = time.monotonic()
    try:
        while not serving.done() and not server.should_exit and not stop.is_set():
            await asyncio.sleep(0.2)
            now = time.monotonic()
            if now - last_report >= 2.0:
                last_report = now
                _report(service)
            if args.duration and now - started >= args.duration:
                break
    finally:
        # Terminals first, so none of them waits on a gateway that is already gone.
        if fleet is not None and dispatcher is not None:
            dispatcher.cancel()
            await asyncio.to_thread(fleet.stop)
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await serving
    _report(service)
    if args.demo and (runner.counters.floor["grant"] == 0 or runner.counters.relayed == 0):
        print("xixin up: the demo saw no grant or relayed frame", file=sys.stderr)
        return 1
    return 0


def _start_demo(
    service: GatewayService, broker: BrokerAddress, secrets: dict[str, str]
) -> tuple[DemoFleet, asyncio.Task[None]]:
    """The demo terminals, and a simulated dispatcher that keeps incidents flowing."""
    from firmware_sim.demo_fleet import DEMO_DEVICES, DemoFleet
    from xixin.demo_incidents import run_demo_dispatcher

    fleet = DemoFleet(broker.host, broker.port, secrets)
    fleet.start()
    grids = sorted({unit for _, unit, _, _ in DEMO_DEVICES if unit in service.org.grids})
    task = asyncio.create_task(
        run_demo_dispatcher(service.incidents, grids), name="demo-dispatcher"
    )
    return fleet, task


def _http_server(config: uvicorn.Config) -> uvicorn.Server:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn without its own SIGINT/SIGTERM handling: `xixin up` stops the simulated
        fleet first, then the HTTP server and the gateway, and the broker last."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # uvicorn >= 0.29
            yield

        def install_signal_handlers(self) -> None:  # older uvicorn
            pass

    return Server(config)


def _on_stop_signal(stop: asyncio.Event, server: uvicorn.Server) -> None:
    """The first Ctrl-C (or SIGTERM) stops cleanly; a second one also stops the HTTP server
    without waiting for its open connections."""
    if stop.is_set():
        server.force_exit = True
    stop.set()


def _report(service: GatewayService) -> None:
    runner = service.runner
    assert runner is not None
    counters, gauges = runner.counters, runner.gauges()
    print(
        f"xixin: online {gauges.devices_online}  grants {counters.floor['grant']}  "
        f"relayed {counters.relayed}  dropped {sum(counters.dropped.values())}  "
        f"talking {gauges.floors_taken}",
        flush=True,
    )
