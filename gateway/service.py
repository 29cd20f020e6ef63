"""The assembled gateway: database, organisation, broker accounts, managed broker and runner."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from gateway.alarms.desk import AlarmDesk
from gateway.alarms.queue import AlarmPolicy
from gateway.auth.audit import AuditWriter
from gateway.auth.roles import TALKER_PREFIX
from gateway.auth.store import AccountStore
from gateway.broker import BrokerError, Listener, ManagedBroker
from gateway.broker_auth import GATEWAY_USER, ensure_gateway_credentials, sync_broker_auth
from gateway.command_store import CommandWriter, load_outbox
from gateway.control.commands import ACK_TIMEOUT_S
from gateway.directory import Directory, build_directory
from gateway.durable import WriterStatus
from gateway.errors import ConfigError
from gateway.event_log import EventHub, EventWriter
from gateway.floor import FloorConfig
from gateway.incidents.categories import default_categories, load_categories
from gateway.incidents.service import IncidentService
from gateway.incidents.store import IncidentWriter
from gateway.locks import release_lock, take_lock
from gateway.recorder_process import RecorderLink
from gateway.retention import Retention, RetentionPolicy
from gateway.runner import GatewayRunner, GatewaySettings
from gateway.store.db import create_db_engine, default_db_url, migrate
from gateway.store.registry import Device, DeviceRegistry
from gateway.tracking.config import TrackingConfig
from gateway.tracking.service import BrokerAccount, TrackingService
from protocol.ids import INCIDENT_TG_PREFIX
from protocol.org import Organisation, default_org, load_org
from transport.address import BrokerAddress
from transport.errors import BrokerUrlError

log = logging.getLogger(__name__)

DirectoryRow = tuple[str, str, str, bool]  # (id, unit, role, enabled)


@dataclass(slots=True)
class ServiceConfig:
    data_dir: Path = field(default_factory=lambda: Path(os.environ.get("XIXIN_DATA_DIR", "var")))
    db_url: str | None = None
    org_path: Path | None = None
    broker_url: str | None = None  # an external broker; None = start a managed mosquitto
    # The managed broker's terminal listeners (plain and TLS); port 0 is any free one.
    listeners: list[Listener] = field(default_factory=lambda: [Listener("127.0.0.1", 0)])
    gateway_user: str | None = None
    gateway_password: str | None = None
    instance: str = "gw1"
    floor: FloorConfig = field(default_factory=FloorConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    device_poll_s: float = 2.0
    record: bool = True  # every talk burst to data_dir/recordings as Ogg Opus
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)  # of the recordings
    categories_path: Path | None = None  # incident categories; None: the shipped ones
    alarms: AlarmPolicy = field(default_factory=AlarmPolicy)  # SOS escalation
    command_ack_timeout_s: float = ACK_TIMEOUT_S  # a sent command unanswered: timed_out


class GatewayService:
    """Owns everything `xixin up` runs besides HTTP; `prepare()` then `async run()`."""

    def __init__(self, config: ServiceConfig, logger: logging.Logger | None = None) -> None:
        self.config = config
        self.log = logger or log
        self.org: Organisation = load_org(config.org_path) if config.org_path else default_org()
        # The database, recordings, broker accounts and secrets live here: the gateway's user only.
        config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(config.data_dir, 0o700)
        # Before anything is written: a second service would rewrite the first one's broker
        # accounts and share its database and recordings.
        self._lock_fd: int | None = take_lock(
            config.data_dir / "xixin.lock",
            f"another gateway is running on {config.data_dir}; "
            "stop it first or use another --data-dir",
        )
        self.db_url = config.db_url or default_db_url(config.data_dir)
        self.engine = create_db_engine(self.db_url)
        self.registry = DeviceRegistry(self.engine, self.org)
        self.accounts = AccountStore(self.engine, self.org)
        self.broker: ManagedBroker | None = None
        self.hub = EventHub()
        # Where the writers spill during a database outage (gateway/durable.py).
        self.journal_dir = config.data_dir / "journal"
        self.journal_dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.journal_dir, 0o700)
        # Journal first (memory_limit 0): a floor or presence event is on disk within
        # milliseconds of happening, so killing the gateway loses none that waited for a batch.
        self.writer = EventWriter(
            self.engine, journal_dir=self.journal_dir / "events", memory_limit=0, logger=self.log
        )
        # Append-only, durable as the event log: sign-ins, provisioning, commands, acks, ...
        self.audit = AuditWriter(
            self.engine, journal_dir=self.journal_dir / "audit", logger=self.log
        )
        # Incidents: journal first like the events; the service owns them while running.
        self.incidents = IncidentService(
            self.engine,
            self.org,
            load_categories(config.categories_path)
            if config.categories_path
            else default_categories(),
            IncidentWriter(
                self.engine, journal_dir=self.journal_dir / "incidents", logger=self.log
            ),
            publish=self.hub.publish,
            logger=self.log,
        )
        self.hub.listeners.append(self.incidents.observe_hub)
        # The command outbox and the alarm queue: every change journalled before it is told.
        self.commands = CommandWriter(
            self.engine, journal_dir=self.journal_dir / "commands", logger=self.log
        )
        self.alarms = AlarmDesk(
            self.engine, self.org, self._unit_of, self.hub, config.alarms,
            journal_dir=self.journal_dir / "alarms", logger=self.log,
        )  # fmt: skip
        self.recordings_dir = config.data_dir / "recordings"
        self.recorder = (
            RecorderLink(self.recordings_dir, self.db_url, logger=self.log)
            if config.record
            else None
        )
        self.retention = Retention(
            self.engine, self.recordings_dir, config.retention, self.audit, time.time, self.log
        )
        self.runner: GatewayRunner | None = None
        self.tracking: TrackingService | None = None
        self._devices_seen: list[Device] = []
        self._talkers_seen: list[DirectoryRow] = []
        self._accounts_lock = asyncio.Lock()  # broker accounts are rewritten one sync at a time
        self._migrated = False
        self._stores_started = False

    def migrate(self) -> DeviceRegistry:
        """Bring the database schema up to date (idempotent); returns the device registry."""
        if not self._migrated:
            migrate(self.engine)
            self._migrated = True
        return self.registry

    def prepare(self) -> GatewayRunner:
        """Migrate the database, write broker accounts, start the managed broker if any."""
        self.migrate()
        if self.config.broker_url:
            try:
                address = BrokerAddress.parse(self.config.broker_url)
            except BrokerUrlError as exc:
                raise ConfigError(str(exc)) from exc
            user, password = self.config.gateway_user, self.config.gateway_password
            if user is None or password is None:
                raise ConfigError(
                    "an external broker needs the gateway's account: --gateway-user and "
                    "--gateway-password (or XIXIN_GATEWAY_USER / XIXIN_GATEWAY_PASSWORD)"
                )
        else:
            password_file, acl_file = sync_broker_auth(
                self.registry, self.org, self.config.data_dir, self.incidents.memberships()
            )
            user, password = ensure_gateway_credentials(self.config.data_dir)
            assert user == GATEWAY_USER
            self.broker = ManagedBroker(
                self.config.data_dir / "broker",
                listeners=self.config.listeners,
                password_file=password_file,
                acl_file=acl_file,
                local_socket=True,
                logger=self.log,
            )
            self.broker.start()
            address = self.broker.local_address
        settings = GatewaySettings(
            broker=address,
            username=user,
            password=password,
            instance=self.config.instance,
            floor=self.config.floor,
            watch_broker=self.broker is not None,
        )
        self._devices_seen = self.registry.list()
        self._talkers_seen = self.talkers()
        self.tracking = TrackingService(
            self.engine, self.org, self.registry, BrokerAccount(address, user, password),
            self.hub, self.config.tracking, journal_dir=self.journal_dir, logger=self.log,
            client_id_prefix=f"xixin-ingest-{self.config.instance}",
        )  # fmt: skip
        self.runner = GatewayRunner(
            settings,
            self.directory(self._devices_seen, self._talkers_seen),
            event_sinks=[
                self.commands.observe_gateway_events,  # first: stored before it is streamed
                self.writer.submit,
                self.hub.publish,
                self.tracking.observe_gateway_events,
                self.audit.observe_gateway_events,
                self.incidents.observe_gateway_events,
            ],
            logger=self.log,
        )
        self.incidents.commander = self.runner.send_command
        self.incidents.alarm_lookup = self.alarms.lookup  # an incident from an alarm
        self.incidents.regroup_hook = self.devices_changed
        # An officer sent outside its grid raises no left_grid alarm while assigned.
        self.tracking.grid_exempt = self.incidents.is_assigned
        # What a killed run journalled goes to the database before the outbox and queue are read.
        self._start_stores()
        for name, writer in (("commands", self.commands), ("alarms", self.alarms.writer)):
            if not writer.core.wait_caught_up(30.0):
                self.log.error("%s: %d journalled rows not yet stored", name, writer.backlog)
        outbox = self.runner.control.command_log
        outbox.ack_timeout_s = self.config.command_ack_timeout_s
        outbox.load(*load_outbox(self.engine))
        self.alarms.last_fix = self.tracking.last_fix
        self.tracking.alarm_sinks.append(self.alarms.on_tracking_events)
        self.alarms.load()
        if self.recorder is not None:
            self.runner.relay.tap = self.recorder.tap
        return self.runner

    @property
    def devices_seen(self) -> list[Device]:
        """The device registry as last read (every device_poll_s)."""
        return self._devices_seen

    def _start_stores(self) -> None:
        if not self._stores_started:
            self._stores_started = True
            self.commands.start()
            self.alarms.start()

    def _stop_stores(self) -> None:
        if self._stores_started:
            self._stores_started = False
            self.commands.stop()
            self.alarms.stop()

    def _unit_of(self, device: str) -> str | None:
        if self.runner is None:
            return None
        info = self.runner.control.directory.get(device)
        return info.unit if info is not None else None

    def talkers(self) -> list[DirectoryRow]:
        """Dispatcher accounts as the gateway's talkers (blocking): each is a dispatcher at its
        unit under its talker id (``xixin-u-<name>``, a reserved prefix no device can have), so
        a dispatcher speaking from the console, or a terminal monitored to it, is that account
        in floors and recordings. They have no broker account: only the gateway speaks as them."""
        rows: list[DirectoryRow] = []
        for account in self.accounts.list():
            role = account.role
            if role.is_dispatcher:
                unit = role.unit if role.unit is not None else self.org.centre.id
                rows.append((account.talker, unit, "dispatcher", account.enabled))
        return rows

    def describe(self, device: str) -> tuple[str | None, dict[str, float] | None]:
        """A talker's display name (a device's name, an account's name for its talker id) and
        newest position ({lat, lon}), from what the service already holds (no database)."""
        name: str | None = None
        if device.startswith(TALKER_PREFIX):
            name = device[len(TALKER_PREFIX) :]
        else:
            name = next((d.name for d in self._devices_seen if d.id == device), None) or None
        position = None
        if self.tracking is not None:
            live = self.tracking.pipeline.live.devices.get(device)
            if live is not None and live.fix is not None:
                position = {"lat": live.fix.lat, "lon": live.fix.lon}
        return name, position

    def directory(
        self, devices: list[Device] | None = None, talkers: list[DirectoryRow] | None = None
    ) -> Directory:
        rows = devices if devices is not None else self.registry.list()
        units = self.org.units()
        self.incidents.set_officers((d.id, d.unit, d.role, d.enabled) for d in rows)
        memberships = self.incidents.memberships()
        return build_directory(
            self.org,
            [(d.id, d.unit, d.role, d.enabled) for d in rows if d.unit in units]
            + [
                row
                for row in (talkers if talkers is not None else self.talkers())
                if row[1] in units
            ],
            memberships,
            {
                tg: f"Incident {tg.removeprefix(INCIDENT_TG_PREFIX)}"
                for tgs in memberships.values()
                for tg in tgs
            },
        )

    def _sync_accounts(
        self, extra: dict[str, set[str]] | None = None
    ) -> tuple[list[Device], list[DirectoryRow]]:
        """Blocking part of a device change: read the registry, rewrite broker accounts
        (`extra`: incident talkgroup memberships, taken on the event loop)."""
        devices = self.registry.list()
        if self.broker is not None:
            sync_broker_auth(self.registry, self.org, self.config.data_dir, extra)
            self.broker.reload()
        return devices, self.talkers()

    async def devices_changed(self) -> None:
        """Apply device (or dispatcher account) changes: broker accounts (managed broker) and
        the live directory.

        The database and files are touched on a worker thread; the directory is swapped on the
        event loop, which owns all gateway state.
        """
        # One at a time: two syncs on worker threads could write the broker's files in the
        # other order than they read the registry, leaving an older file (a device just added
        # refused) while `_devices_seen` says all is current, so the watcher never mends it.
        async with self._accounts_lock:
            extra = self.incidents.memberships()
            devices, talkers = await asyncio.to_thread(self._sync_accounts, extra)
            self._devices_seen, self._talkers_seen = devices, talkers
            if self.runner is not None:
                self.runner.update_directory(self.directory(devices, talkers))

    async def _supervise_broker(self, interval_s: float = 0.2) -> None:
        """Restart the managed broker within a second of its death (same listeners, config)."""
        broker = self.broker
        if broker is None:
            return
        while True:
            await asyncio.sleep(interval_s)
            try:
                await asyncio.to_thread(broker.restart_if_dead)
            except BrokerError as exc:  # it would not start: say so, and try again
                self.log.error("cannot restart the broker: %s", exc)

    def broker_problem(self) -> str | None:
        """Why the managed broker is not serving, or None (an external broker: None)."""
        if self.broker is None or self.broker.running:
            return None
        return f"managed broker not running ({self.broker.last_exit or 'stopped'}); restarting"

    def writers(self) -> list[tuple[str, WriterStatus]]:
        """(name, writer) of every durable database writer: gateway events, then tracking's."""
        writers: list[tuple[str, WriterStatus]] = [
            ("events", self.writer),
            ("audit", self.audit),
            ("incidents", self.incidents.writer),
            ("commands", self.commands),
            ("alarms", self.alarms.writer),
        ]
        if self.tracking is not None:
            writers += self.tracking.writers()
        return writers

    def writer_problems(self) -> list[str]:
        """Writers that are not healthy: a dead thread, or writes failing (the backlog grows)."""
        return [p for _, writer in self.writers() if (p := writer.problem()) is not None]

    def problems(self) -> list[str]:
        """Everything that makes the gateway degraded besides its MQTT link: the broker (down,
        or dropping messages), the database writers, the recorder."""
        found = [self.broker_problem()]
        if self.runner is not None:
            found.append(self.runner.broker_stats.problem(time.monotonic()))
        found += self.writer_problems()
        if self.recorder is not None and self.runner is not None:
            found.append(self.recorder.problem())
        return [problem for problem in found if problem is not None]

    @property
    def broker_restarts(self) -> int:
        """Restarts of the managed broker by the supervisor (0 on an external broker)."""
        return self.broker.restarts if self.broker is not None else 0

    async def _keep_recordings(self) -> None:
        """Apply the recordings' retention now and then (never while a sweep runs)."""
        if not self.config.retention.active:
            return
        while True:
            try:
                await asyncio.to_thread(self.retention.sweep)
            except Exception:  # a sweep that failed is logged; the next one tries again
                self.log.exception("recording retention sweep failed")
            await asyncio.sleep(self.config.retention.interval_s)

    async def _watch_devices(self) -> None:
        """Pick up changes made by `xixin devices …` in another process."""
        while True:
            await asyncio.sleep(self.config.device_poll_s)
            devices = await asyncio.to_thread(self.registry.list)
            talkers = await asyncio.to_thread(self.talkers)
            if devices != self._devices_seen or talkers != self._talkers_seen:
                self.log.info("device registry changed; reloading accounts and directory")
                await self.devices_changed()

    async def _tick_incidents(self, interval_s: float = 1.0) -> None:
        """Incident deadlines: reminders and automatic escalations."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                self.incidents.tick()
            except Exception:  # logged; the next tick tries again
                self.log.exception("incident deadlines failed")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[GatewayRunner]:
        """Run the gateway while the context is open (the app lifespan uses this)."""
        runner = self.runner or self.prepare()
        self.writer.start()
        self.audit.start()
        await asyncio.to_thread(self.incidents.load)
        if self.incidents.memberships():  # incident talkgroups of a previous run: ACL, directory
            await self.devices_changed()
        incident_ticker = asyncio.create_task(self._tick_incidents(), name="incident-deadlines")
        self._start_stores()
        if self.recorder is not None:
            self.recorder.start()
        task = asyncio.create_task(runner.run(), name="gateway")
        escalation = asyncio.create_task(self.alarms.run(), name="alarm-escalation")
        watcher = asyncio.create_task(self._watch_devices(), name="device-watch")
        supervisor = asyncio.create_task(self._supervise_broker(), name="broker-supervisor")
        keeper = asyncio.create_task(self._keep_recordings(), name="recording-retention")
        assert self.tracking is not None
        tracking = asyncio.create_task(self.tracking.run(), name="tracking")
        try:
            ready = asyncio.create_task(runner.ready.wait())
            done, _ = await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                ready.cancel()
                task.result()  # raises why the gateway could not start
            yield runner
        finally:
            escalation.cancel()
            supervisor.cancel()
            keeper.cancel()
            watcher.cancel()
            incident_ticker.cancel()
            self.tracking.stop()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(tracking, 15)
            runner.stop()
            try:
                await asyncio.wait_for(task, 10)
            except asyncio.CancelledError:
                pass
            except TimeoutError:  # wait_for has cancelled it: the rest must still stop
                self.log.warning("the gateway's MQTT connections did not close within 10 s")
            self.writer.stop()
            self.audit.stop()
            self.incidents.stop()
            self._stop_stores()
            if self.recorder is not None:
                await asyncio.to_thread(self.recorder.stop)

    def close(self) -> None:
        try:
            self._stop_stores()
            if self.broker is not None:
                self.broker.stop()
            self.engine.dispose()
        finally:
            fd, self._lock_fd = self._lock_fd, None
            release_lock(fd)
