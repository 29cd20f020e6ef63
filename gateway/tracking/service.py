"""TrackingService: the tracking part of `xixin up` — ingest workers, writer, live stream, alarms.

Constructed by GatewayService from its engine, organisation, device registry, broker account
and event hub; `running()` keeps it up while the gateway runs. Everything here runs on the
gateway's event loop except database work (writer thread, `asyncio.to_thread`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy

from gateway.durable import DurableWriter, WriterStatus
from gateway.event_log import EventHub
from gateway.events import GatewayEvent
from gateway.store.registry import Device, DeviceRegistry
from gateway.tracking.config import DEFAULT_SHARE_GROUP, TrackingConfig
from gateway.tracking.errors import GeofenceError
from gateway.tracking.geofence import GeofenceSpec, build_geometry
from gateway.tracking.ingest import IngestWorker
from gateway.tracking.model import Fix, TrackingEvent
from gateway.tracking.pipeline import FlushResult, TrackingPipeline
from gateway.tracking.queries import live_view
from gateway.tracking.repository import TrackingRepository
from gateway.tracking.store import PositionReader, PositionWriter
from protocol.org import Organisation
from transport.address import BrokerAddress

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BrokerAccount:
    address: BrokerAddress
    username: str | None = None
    password: str | None = None


def position_event(fix: Fix) -> GatewayEvent:
    return GatewayEvent(
        "position",
        fix.device,
        int(fix.server_time * 1000),
        {
            "fix_time": int(fix.fix_time * 1000),
            "lat": fix.lat,
            "lon": fix.lon,
            "speed": fix.speed,
            "course": fix.course,
            "acc": fix.accuracy,
            "bat": fix.battery,
            "src": fix.source,
        },
    )


def tracking_gateway_event(event: TrackingEvent) -> GatewayEvent:
    data: dict[str, Any] = {"active": event.active, "lat": event.lat, "lon": event.lon}
    if event.kind == "alarm":
        data["alarm"] = event.type
    else:
        data["event"] = event.type
        data["geofence"] = event.geofence
    data.update(event.data)
    return GatewayEvent(event.kind, event.device, int(event.ts * 1000), data)


class TrackingService:
    def __init__(
        self,
        engine: sqlalchemy.Engine,
        org: Organisation,
        registry: DeviceRegistry,
        broker: BrokerAccount,
        hub: EventHub | None = None,
        config: TrackingConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        client_id_prefix: str | None = None,
        journal_dir: Path | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        """`journal_dir`: where the position and event writers spill past their memory bound
        and during a database outage (`<journal_dir>/positions`, `…/track_events`); None keeps
        the backlog in memory only."""
        self.engine = engine
        # MQTT client ids must be unique on the broker: several processes need their own.
        # Stable: the broker keeps the ingest's persistent sessions by client id.
        self.client_id_prefix = client_id_prefix or "xixin-ingest"
        self.org = org
        self.registry = registry
        self.broker = broker
        self.hub = hub
        self.grid_exempt: Callable[[str], bool] | None = None
        self.config = config or TrackingConfig()
        self.clock = clock
        self.log = logger or log
        self.devices: dict[str, Device] = {}
        self.repository = TrackingRepository(engine, clock)
        self.reader = PositionReader(engine)
        self.pipeline = TrackingPipeline(
            self.config,
            org,
            is_device=self.devices.__contains__,
            assigned_grid=self.assigned_grid,
            logger=self.log,
        )
        self.writer = PositionWriter(
            engine,
            max_batch=self.config.writer_max_batch,
            max_wait=self.config.writer_max_wait_s,
            journal_dir=journal_dir / "positions" if journal_dir else None,
            logger=self.log,
        )
        # Alarms and geofence transitions: stored by a durable writer like positions.
        self.event_writer: DurableWriter[TrackingEvent] = DurableWriter(
            self.repository.insert_events,
            name="track-event-writer",
            label="alarm writer",
            noun="alarm/geofence events",
            encode=msgspec.json.encode,
            decode=msgspec.json.Decoder(TrackingEvent).decode,
            journal_dir=journal_dir / "track_events" if journal_dir else None,
            # Journal first, like the gateway's events: an alarm is on disk at once.
            memory_limit=0 if journal_dir else 20_000,
            max_batch=500,
            max_wait=0.05,
            logger=self.log,
        )
        #: Who else takes alarm episodes (the alarm queue): called on the event loop.
        self.alarm_sinks: list[Callable[[list[TrackingEvent]], None]] = []
        self.workers: list[IngestWorker] = []
        self.ready = asyncio.Event()
        self._stopping = asyncio.Event()

    # ---- devices and fences ----------------------------------------------------------------------

    def assigned_grid(self, device_id: str) -> str | None:
        """The grid a device keeps to (left_grid alarm); None: none, or exempt for now (an
        officer sent to an incident: `grid_exempt`)."""
        device = self.devices.get(device_id)
        if device is None or device.unit not in self.org.grids:
            return None
        if self.grid_exempt is not None and self.grid_exempt(device_id):
            return None
        return device.unit

    def refresh_devices(self) -> None:
        """Re-read the registry (called at start and periodically; blocking)."""
        self.devices.clear()
        self.devices.update((d.id, d) for d in self.registry.list())

    def reload_geofences(self) -> None:
        """Re-read custom geofences (blocking): call after adding or deleting one."""
        self.pipeline.set_fences(self.repository.geofences())

    # ---- lifecycle -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until stop(): ingest workers, the tick loop and the device refresh."""
        await asyncio.to_thread(self._prepare)
        self.writer.start()
        self.event_writer.start()
        account = self.broker
        connections = max(1, self.config.ingest_workers)
        # Several connections of ours split the beacons in a shared group; one takes them all.
        share = self.config.share_group or (DEFAULT_SHARE_GROUP if connections > 1 else None)
        for index in range(connections):
            self.workers.append(
                IngestWorker(
                    account.address,
                    self.pipeline,
                    self.writer,
                    client_id=f"{self.client_id_prefix}-{index + 1}",
                    username=account.username,
                    password=account.password,
                    share_group=share,
                    on_flush=self._publish,
                    clock=self.clock,
                    logger=self.log,
                )
            )
        try:
            async with asyncio.TaskGroup() as group:
                readies = []
                for worker in self.workers:
                    ready = asyncio.Event()
                    readies.append(ready)
                    group.create_task(worker.run(ready), name=worker.client.options.client_id)
                ticker = group.create_task(self._tick_loop(), name="tracking-ticks")
                watcher = group.create_task(self._watch_devices(), name="tracking-devices")
                waiter = group.create_task(self._until_ready(readies), name="tracking-ready")
                await self._stopping.wait()  # also when a worker never got connected
                waiter.cancel()
                ticker.cancel()
                watcher.cancel()
                for worker in self.workers:
                    await worker.close()
        finally:
            await asyncio.gather(
                asyncio.to_thread(self.writer.stop), asyncio.to_thread(self.event_writer.stop)
            )

    async def _until_ready(self, readies: list[asyncio.Event]) -> None:
        await asyncio.gather(*(r.wait() for r in readies))
        self.ready.set()

    def stop(self) -> None:
        self._stopping.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TrackingService]:
        task = asyncio.create_task(self.run(), name="tracking")
        ready = asyncio.create_task(self.ready.wait())
        try:
            done, _ = await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                ready.cancel()
                task.result()
            yield self
        finally:
            self.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 15)

    def _prepare(self) -> None:
        self.refresh_devices()
        self.reload_geofences()
        now = self.clock()
        for device_id in self.devices:
            point = self.reader.last_point(device_id)
            if point is not None:
                self.pipeline.live.seed(
                    Fix(device_id, point.t, point.lat, point.lon, point.speed, point.course,
                        point.altitude, point.accuracy, point.battery, server_time=point.t),
                    now,
                )  # fmt: skip

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_interval_s)
            rows = self.pipeline.take_rows()
            if rows:
                self.writer.submit(rows)
            self._publish(self.pipeline.tick(self.clock()))

    async def _watch_devices(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            try:
                devices = await asyncio.to_thread(self.registry.list)
            except Exception:
                self.log.exception("tracking could not re-read the device registry")
                continue
            self.devices.clear()
            self.devices.update((d.id, d) for d in devices)

    # ---- output ----------------------------------------------------------------------------------

    def _publish(self, result: FlushResult) -> None:
        if result.events:
            self._store_events(result.events)
        if self.hub is None:
            return
        out: list[GatewayEvent] = [position_event(fix) for fix in result.positions]
        for change in result.status:
            out.append(
                GatewayEvent(
                    "status", change.device, int(change.ts * 1000),
                    {"state": change.state, "reason": change.reason},
                )
            )  # fmt: skip
        # Alarm episodes reach the console through the alarm queue (its `alarm` events).
        out.extend(tracking_gateway_event(e) for e in result.events if e.kind != "alarm")
        if out:
            self.hub.publish(out)

    def _store_events(self, events: list[TrackingEvent]) -> None:
        self.event_writer.submit(events)
        alarms = [e for e in events if e.kind == "alarm"]
        if alarms:
            for sink in self.alarm_sinks:
                try:
                    sink(alarms)
                except Exception:
                    self.log.exception("alarm sink failed")

    def observe_gateway_events(self, events: list[GatewayEvent]) -> None:
        """Event sink for the control plane: an SOS is stored with the position it carried,
        else the device's last known one."""
        for event in events:
            if event.kind == "sos" and event.device:
                data = event.data
                stored = self.pipeline.on_sos(
                    event.device, bool(data.get("active")), event.wall_ms / 1000,
                    data.get("lat"), data.get("lon"),
                )  # fmt: skip
                if stored:
                    self._store_events(stored)

    def last_fix(self, device: str) -> Fix | None:
        live = self.pipeline.live.devices.get(device)
        return live.fix if live is not None else None

    def battery(self, device: str) -> int | None:
        """The device's newest battery level (beacons and status), if any."""
        live = self.pipeline.live.devices.get(device)
        return live.battery if live is not None else None

    # ---- API operations (on the event loop; database work goes to threads) -----------------------

    def live(self) -> list[dict[str, Any]]:
        return live_view(
            self.pipeline.live, self.pipeline.geofences.inside, self.pipeline.alarms.active
        )

    def device_grids(self) -> dict[str, str | None]:
        return {device: self.assigned_grid(device) for device in sorted(self.devices)}

    def geofences(self) -> list[GeofenceSpec]:
        return list(self.pipeline.geofences.fences.specs)

    async def add_geofence(self, spec: GeofenceSpec) -> None:
        build_geometry(spec, self.pipeline.projection)  # raises GeofenceError when invalid
        if spec.id in self.org.grids:
            raise GeofenceError(f"{spec.id!r} is a grid of the organisation")
        await asyncio.to_thread(self.repository.add_geofence, spec)
        self.pipeline.set_fences(await asyncio.to_thread(self.repository.geofences))

    async def delete_geofence(self, fence_id: str) -> None:
        await asyncio.to_thread(self.repository.delete_geofence, fence_id)
        self.pipeline.set_fences(await asyncio.to_thread(self.repository.geofences))

    def writers(self) -> list[tuple[str, WriterStatus]]:
        """(name, writer) of each durable writer, for health and metrics."""
        return [("positions", self.writer), ("track_events", self.event_writer)]

    def stats(self) -> dict[str, Any]:
        counters = self.pipeline.counters
        return {
            "received": dict(counters.received),
            "rejected": dict(counters.rejected),
            "ignored": counters.ignored,
            "accepted": self.pipeline.filters.accepted,
            "filtered": self.pipeline.filtered(),
            "stored": self.writer.inserted,
            "pending": self.writer.pending,
            "write_failures": self.writer.failures,
            # re-sent beacons the database already had (QoS 1 may deliver twice)
            "duplicates_in_db": self.writer.offered - self.writer.inserted,
        }
