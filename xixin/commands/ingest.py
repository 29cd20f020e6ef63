"""``xixin ingest``: standalone tracking ingest worker processes for a broker and a database.

    xixin ingest --broker mqtt://host:1883 --db postgresql+psycopg://… --workers 4

Each worker process runs the same tracking service as ``xixin up`` (parse -> filter chain ->
geofences/alarms/live -> batched position writer, alarm and geofence events stored), without
the console stream, and joins the MQTT 5 shared subscription ``$share/<group>/…`` (§10.2), so
the broker splits the beacons over every worker of the group — including ``xixin up``'s own.
The parent migrates the database once, starts the workers, prints a status line every few
seconds, and on Ctrl-C (or SIGTERM) sends SIGTERM to each worker by its PID; a worker then
disconnects, commits what it holds and exits. A worker outliving its parent stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

from gateway.store.db import create_db_engine, migrate
from gateway.store.registry import DeviceRegistry
from gateway.tracking.config import DEFAULT_SHARE_GROUP, TrackingConfig, load_tracking_config
from protocol.org import Organisation
from transport.address import BrokerAddress
from xixin.errors import EXPECTED_OR_OS_ERRORS, one_line
from xixin.logs import setup_logging
from xixin.options import (
    DURATION_HELP,
    add_database,
    add_gateway_account,
    add_org,
    database_url,
    duration,
    gateway_password,
    load_org_source,
)

log = logging.getLogger("xixin.ingest")

EXIT_OK = 0
EXIT_WORKER_FAILED = 1
EXIT_ERROR = 2
STOP_TIMEOUT_S = 20.0
# Per worker, in a shared array: received, stored, refused (parse errors + unknown devices), ready.
_FIELDS = 4


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What a worker process needs; plain values, so it crosses the spawn boundary."""

    broker_url: str
    db_url: str
    username: str | None
    password: str | None
    org: str | None  # an --org value: longxi, synthetic:N or an org file
    tracking_path: Path | None
    connections: int
    share_group: str
    accept_unprovisioned: bool
    log_level: str
    name: str = "workers"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "ingest",
        help="run standalone tracking ingest worker processes (MQTT 5 shared subscription)",
        description=(__doc__ or "").split("\n\n")[0],
    )
    parser.add_argument("--broker", required=True, help="MQTT 5 broker, mqtt(s)://host:port")
    add_database(parser, required=True)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--connections", type=int, default=1, help="MQTT connections per worker (default 1)"
    )
    add_gateway_account(parser, "the workers log in with")
    add_org(parser)
    parser.add_argument("--tracking", type=Path, help="tracking settings YAML")
    parser.add_argument(
        "--share-group",
        help="shared-subscription group (default: the config's, else xixin-ingest; the "
        "gateway's own ingest joins it only if its tracking config names it, protocol §10.2)",
    )
    parser.add_argument(
        "--name",
        default="workers",
        help="the workers' name on the broker: client ids xixin-ingest-NAME-W-C, persistent "
        "sessions the broker keeps (and queues beacons for) while they are away; keep it the "
        "same across restarts, and different for two `xixin ingest` on one broker "
        "(default: workers)",
    )
    parser.add_argument(
        "--accept-unprovisioned",
        action="store_true",
        help="store beacons of devices that are not in the registry (tests, load generators)",
    )
    parser.add_argument(
        "--duration", type=duration, help=f"stop after this long ({DURATION_HELP}; default: never)"
    )
    parser.add_argument(
        "--status-every",
        type=duration,
        default=2.0,
        help=f"time between status lines ({DURATION_HELP}; default 2s)",
    )
    parser.set_defaults(handler=cmd_ingest)


def _load(spec: WorkerSpec) -> tuple[Organisation, TrackingConfig]:
    org = load_org_source(spec.org)
    config = load_tracking_config(spec.tracking_path) if spec.tracking_path else TrackingConfig()
    config.ingest_workers = spec.connections
    config.share_group = spec.share_group
    if spec.accept_unprovisioned:
        config.require_provisioned = False
    return org, config


def cmd_ingest(args: argparse.Namespace) -> int:
    if args.workers < 1 or args.connections < 1:
        print("xixin ingest: --workers and --connections must be at least 1", file=sys.stderr)
        return EXIT_ERROR
    try:
        db_url = database_url(args, required=True)
        assert db_url is not None  # required=True
        BrokerAddress.parse(args.broker)
        load_org_source(args.org)  # fail here, once, on a bad organisation
        config = load_tracking_config(args.tracking) if args.tracking else TrackingConfig()
        spec = WorkerSpec(
            broker_url=args.broker,
            db_url=db_url,
            username=args.gateway_user,
            password=gateway_password(args.gateway_password_file),
            org=args.org,
            tracking_path=args.tracking,
            connections=args.connections,
            share_group=args.share_group or config.share_group or DEFAULT_SHARE_GROUP,
            accept_unprovisioned=args.accept_unprovisioned,
            name=args.name,
            log_level=logging.getLevelName(logging.getLogger().getEffectiveLevel()),
        )
        migrate(db_url)
    except EXPECTED_OR_OS_ERRORS as exc:
        print(f"xixin ingest: {one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # a malformed database URL, an unreachable database
        print(f"xixin ingest: cannot prepare the database: {one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    return _supervise(spec, args.workers, args.duration, args.status_every)


class _Stop(Exception):
    """SIGTERM to the parent: shut down like Ctrl-C."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def _supervise(spec: WorkerSpec, workers: int, duration: float | None, every: float) -> int:
    ctx = multiprocessing.get_context("spawn")
    counters = ctx.Array("q", workers * _FIELDS)
    procs: list[BaseProcess] = []
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    code = EXIT_OK
    try:
        for index in range(workers):
            proc = ctx.Process(
                target=worker_main,
                args=(spec, index, counters, os.getpid()),
                name=f"xixin-ingest-{index + 1}",
            )
            proc.start()
            procs.append(proc)
        pids = " ".join(str(p.pid) for p in procs)
        print(
            f"xixin ingest: {workers} worker(s), pids {pids}; broker {spec.broker_url}, "
            f"group {spec.share_group} (Ctrl-C stops)",
            flush=True,
        )
        print(
            "xixin ingest: the broker deals the group's beacons out in turn, so each worker's "
            "per-device filters, geofences and alarms see a share of every track (protocol "
            "§10.2: one worker, or a broker that routes by topic, keeps them exact)",
            flush=True,
        )
        code = _watch(procs, counters, duration, every)
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop_workers(procs)
        _status(counters, len(procs), "stopped")
    return code


def _watch(procs: list[BaseProcess], counters: Any, duration: float | None, every: float) -> int:
    started = last = time.monotonic()
    announced: set[int] = set()
    while True:
        time.sleep(0.2)
        for index, proc in enumerate(procs):
            if index not in announced and counters[index * _FIELDS + 3]:
                announced.add(index)
                print(f"xixin ingest: worker {index + 1} ready (pid {proc.pid})", flush=True)
            if not proc.is_alive():
                print(
                    f"xixin ingest: worker {index + 1} (pid {proc.pid}) exited with "
                    f"{proc.exitcode}; stopping",
                    file=sys.stderr,
                )
                return EXIT_WORKER_FAILED
        now = time.monotonic()
        if now - last >= every:
            last = now
            _status(counters, len(procs), "running")
        if duration is not None and now - started >= duration:
            return EXIT_OK


def _stop_workers(procs: list[BaseProcess]) -> None:
    """SIGTERM each worker by its PID, wait for it; SIGKILL one that does not stop in time."""
    for proc in procs:
        if proc.pid is not None and proc.is_alive():
            os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive() and proc.pid is not None:
            log.warning(
                "worker pid %d did not stop in %.0f s; killing it", proc.pid, STOP_TIMEOUT_S
            )
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(5)


def _status(counters: Any, workers: int, state: str) -> None:
    values = list(counters[: workers * _FIELDS])
    per = [values[i * _FIELDS : (i + 1) * _FIELDS] for i in range(workers)]
    print(
        f"xixin ingest: {state}  received {sum(v[0] for v in per)}  "
        f"stored {sum(v[1] for v in per)}  refused {sum(v[2] for v in per)}  "
        f"per worker {[v[0] for v in per]}",
        flush=True,
    )


# ---- worker process ----------------------------------------------------------------------------


def worker_main(spec: WorkerSpec, index: int, counters: Any, parent: int) -> None:
    """One worker process: a TrackingService without a console hub, until SIGTERM."""
    # Ctrl-C in a terminal reaches the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_logging(spec.log_level, "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    from gateway.tracking.service import BrokerAccount, TrackingService
    from transport.loop import run_event_loop

    org, config = _load(spec)
    engine = create_db_engine(spec.db_url)
    service = TrackingService(
        engine,
        org,
        DeviceRegistry(engine, org),
        BrokerAccount(BrokerAddress.parse(spec.broker_url), spec.username, spec.password),
        None,
        config,
        client_id_prefix=f"xixin-ingest-{spec.name}-{index + 1}",
        logger=logging.getLogger(f"xixin.ingest.{index + 1}"),
    )
    base = index * _FIELDS

    def publish_counters() -> None:
        stats = service.stats()
        counters[base] = sum(stats["received"].values())
        counters[base + 1] = stats["stored"]
        counters[base + 2] = sum(stats["rejected"].values())
        counters[base + 3] = int(service.ready.is_set())

    async def main() -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, service.stop)
        task = asyncio.create_task(service.run())
        while not task.done():
            await asyncio.wait({task}, timeout=0.5)
            publish_counters()
            if os.getppid() != parent:
                service.stop()  # the parent is gone: nobody would ever stop us
        task.result()
        publish_counters()
        return EXIT_OK

    try:
        code = run_event_loop(main())
    finally:
        engine.dispose()
    sys.exit(code)
