"""TrackingService end to end: real mosquitto, real SQLite/PostgreSQL, the three formats."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy

from gateway.broker import ManagedBroker
from gateway.event_log import EventHub
from gateway.events import GatewayEvent
from gateway.store.registry import DeviceRegistry
from gateway.tracking.config import TrackingConfig
from gateway.tracking.formats import nmea_checksum
from gateway.tracking.model import TrackingEvent
from gateway.tracking.service import BrokerAccount, TrackingService
from gateway.tracking.store import PositionReader
from protocol.org import default_org
from transport.client import ClientOptions, MqttClient

ORG = default_org()
GRID1 = ORG.grids["grid-01"].centre  # (lon, lat)
GRID2 = ORG.grids["grid-02"].centre


def beacon(ts: float, lon: float, lat: float, **extra: Any) -> bytes:
    return json.dumps({"v": 1, "ts": int(ts * 1000), "lat": lat, "lon": lon, **extra}).encode()


def nmea_rmc(ts: float, lon: float, lat: float) -> bytes:
    clock = time.gmtime(ts)
    lat_field = f"{int(lat):02d}{(lat - int(lat)) * 60:07.4f}"
    lon_field = f"{int(lon):03d}{(lon - int(lon)) * 60:07.4f}"
    body = (
        f"GPRMC,{time.strftime('%H%M%S', clock)},A,{lat_field},N,{lon_field},E,001.0,090.0,"
        f"{time.strftime('%d%m%y', clock)},,"
    )
    return nmea_checksum(body).encode()


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def drain(queue: asyncio.Queue[dict[str, Any]]) -> list[dict[str, Any]]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


async def scenario(engine: sqlalchemy.Engine, broker: ManagedBroker) -> None:
    registry = DeviceRegistry(engine, ORG)
    registry.add("T001", "grid-01", "officer")
    registry.add("T002", "grid-02", "officer")
    hub = EventHub()
    stream = hub.subscribe()
    config = TrackingConfig(live_push_interval_s=0.0, tick_interval_s=0.1)
    service = TrackingService(engine, ORG, registry, BrokerAccount(broker.address), hub, config)
    episodes: list[TrackingEvent] = []  # what the alarm queue is given
    service.alarm_sinks.append(episodes.extend)
    publisher = MqttClient(ClientOptions(broker.host, broker.port, "pub"), lambda *_: None)
    await publisher.connect()
    try:
        async with service.running():
            now = time.time()
            for i in range(5):
                await publisher.publish(
                    "xixin/v1/dev/T001/gps", beacon(now - 50 + 5 * i, *GRID1, bat=80)
                )
            await publisher.publish("xixin/v1/dev/T001/gps", beacon(now - 30, *GRID1))  # dup
            await publisher.publish("xixin/v1/dev/T001/gps", b"{broken")
            await publisher.publish("xixin/v1/dev/NOBODY/gps", beacon(now, *GRID1))
            await publisher.publish("xixin/v1/dev/T002/nmea", nmea_rmc(now - 1, *GRID2))
            owntracks = {"_type": "location", "tst": int(now), "lat": GRID1[1] + 1e-4,
                         "lon": GRID1[0], "acc": 8, "batt": 77, "vel": 4, "tid": "T1"}  # fmt: skip
            await publisher.publish("owntracks/T001/phone", json.dumps(owntracks).encode())
            await wait_for(lambda: service.writer.inserted >= 7)
            reader = PositionReader(engine)
            assert reader.count("T001") == 6 and reader.count("T002") == 1
            stats = service.stats()
            assert stats["received"] == {"native": 8, "nmea": 1, "owntracks": 1}
            assert stats["rejected"] == {"bad_json": 1, "unknown_device": 1}
            assert stats["filtered"] == {"duplicate": 1}
            await wait_for(lambda: stream.qsize() >= 4)
            events = drain(stream)
            positions = {e["device"]: e for e in events if e["kind"] == "position"}
            assert positions["T001"]["src"] == "owntracks" and positions["T001"]["bat"] == 77
            assert positions["T002"]["src"] == "nmea"
            assert {(e["device"], e["state"]) for e in events if e["kind"] == "status"} == {
                ("T001", "online"),
                ("T002", "online"),
            }
            # T001 walks out of grid-01 (well past the margin): left_grid alarm, stored and
            # handed to the alarm queue (which streams it), not streamed as an episode
            await publisher.publish(
                "xixin/v1/dev/T001/gps", beacon(now + 120, GRID2[0], GRID2[1] + 0.004)
            )
            await wait_for(lambda: any(e.type == "left_grid" for e in episodes))
            assert not any(e["kind"] == "alarm" for e in drain_into(stream))
            # the OwnTracks Last Will takes T001 offline
            await publisher.publish("owntracks/T001/phone", b'{"_type":"lwt","tst":1}')
            await wait_for(
                lambda: (
                    ("T001", "offline")
                    in {(e["device"], e.get("state")) for e in drain_into(stream)}
                )
            )
            # SOS from the control plane is stored with the last position
            service.observe_gateway_events(
                [GatewayEvent("sos", "T002", int(time.time() * 1000), {"active": True})]
            )  # fmt: skip
            await wait_for(lambda: len(service.repository.events(kind="alarm")) >= 2)
            alarms = {(e.device, e.type) for e in service.repository.events(kind="alarm")}
            assert alarms == {("T001", "left_grid"), ("T002", "sos")}
            sos = next(e for e in service.repository.events(kind="alarm") if e.type == "sos")
            assert sos.lat is not None and abs(sos.lat - GRID2[1]) < 1e-3
            assert [e.type for e in episodes if e.device == "T002"] == ["sos"]
            # an SOS that carries the terminal's own position is stored there
            service.observe_gateway_events(
                [GatewayEvent("sos", "T002", int(time.time() * 1000), {"active": False})]
            )
            here = {"active": True, "lat": 30.5, "lon": 104.5}
            service.observe_gateway_events(
                [GatewayEvent("sos", "T002", int(time.time() * 1000), here)]
            )
            await wait_for(lambda: len(service.repository.events(kind="alarm")) >= 4)
            raised = [e for e in episodes if e.device == "T002" and e.active]
            assert (raised[-1].lat, raised[-1].lon) == (30.5, 104.5)
    finally:
        await publisher.close()


seen: list[dict[str, Any]] = []


def drain_into(queue: asyncio.Queue[dict[str, Any]]) -> list[dict[str, Any]]:
    seen.extend(drain(queue))
    return seen


def test_service_end_to_end_sqlite(
    sqlite_engine: sqlalchemy.Engine, mosquitto: ManagedBroker
) -> None:
    seen.clear()
    asyncio.run(scenario(sqlite_engine, mosquitto))


def test_service_end_to_end_postgresql(
    pg_engine: sqlalchemy.Engine, mosquitto: ManagedBroker
) -> None:
    seen.clear()
    asyncio.run(scenario(pg_engine, mosquitto))
