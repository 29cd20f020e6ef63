"""A gateway restart loses nothing: the ingest acknowledges beacons only once they are kept,
and its persistent session makes the broker queue them while it is away (real mosquitto,
a real SQLite positions table)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import sqlalchemy

from gateway.broker import ManagedBroker
from gateway.store.db import create_db_engine, migrate
from gateway.tables import metadata as _all_tables  # noqa: F401  (every table joins metadata)
from gateway.tracking.config import TrackingConfig
from gateway.tracking.ingest import IngestWorker
from gateway.tracking.pipeline import TrackingPipeline
from gateway.tracking.store import PositionWriter
from protocol import topics
from protocol.org import default_org
from transport.client import MqttClient

ORG = default_org()
LON, LAT = ORG.grids["grid-01"].centre
DEVICES = [f"T{n:03d}" for n in range(1, 6)]


def beacon(n: int, now_ms: int) -> bytes:
    return json.dumps(
        {"v": 1, "ts": now_ms - 600_000 + n * 1000, "lat": LAT + n * 1e-5, "lon": LON}
    ).encode()


def pipeline() -> TrackingPipeline:
    return TrackingPipeline(
        TrackingConfig(), ORG, is_device=set(DEVICES).__contains__, assigned_grid={}.get,
        logger=logging.getLogger("test.ingest"),
    )  # fmt: skip


def stored(engine: sqlalchemy.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sqlalchemy.text("SELECT count(*) FROM positions")).scalar_one())


def test_beacons_of_a_dead_ingest_and_of_its_absence_are_all_stored(
    mosquitto: ManagedBroker, tmp_path: Path
) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'x.db'}")
    migrate(engine)
    now_ms = int(time.time() * 1000)
    sent: list[tuple[str, bytes]] = []

    async def publish(first: int, count: int) -> None:
        async with MqttClient(mosquitto.address.client_options("pub"), lambda *_: None) as pub:
            for n in range(first, first + count):
                for device in DEVICES:
                    message = (topics.gps(device), beacon(n, now_ms))
                    await pub.publish(*message, qos=1)  # the broker's PUBACK: acknowledged
                    sent.append(message)

    async def first_life() -> int:
        # A writer that never commits (as if the gateway died before writing): no acks.
        stuck = PositionWriter(engine)
        worker = IngestWorker(mosquitto.address, pipeline(), stuck, client_id="xixin-ingest-gw1-1")
        ready = asyncio.Event()
        task = asyncio.create_task(worker.run(ready))
        await ready.wait()
        await publish(0, 20)
        while worker.messages < len(sent):
            await asyncio.sleep(0.01)
        worker.client.abort()  # killed: no DISCONNECT, nothing acknowledged
        task.cancel()
        return worker.acked

    assert asyncio.run(first_life()) == 0
    asyncio.run(publish(20, 10))  # while no ingest runs: the broker queues them for its session

    async def second_life() -> int:
        writer = PositionWriter(engine)
        writer.start()
        worker = IngestWorker(mosquitto.address, pipeline(), writer, client_id="xixin-ingest-gw1-1")
        ready = asyncio.Event()
        task = asyncio.create_task(worker.run(ready))
        await ready.wait()
        while stored(engine) < len(sent):  # everything the broker acknowledged comes back
            await asyncio.sleep(0.05)
        while worker.acked < len(sent):  # and is acknowledged once kept
            await asyncio.sleep(0.01)
        await worker.close()
        task.cancel()
        await asyncio.to_thread(writer.stop)
        return worker.acked

    assert asyncio.run(second_life()) == len(sent) == 150
    assert stored(engine) == 150


def test_beacons_sent_right_after_a_broker_restart_are_stored(tmp_path: Path) -> None:
    """mosquitto 2.0 restores a persistent session's plain subscription after a restart, not a
    shared one: the gateway's ingest subscribes plainly, so what terminals publish before it
    has reconnected is queued for it, not dropped."""
    import os
    import signal

    broker = ManagedBroker(tmp_path / "broker")
    broker.start()
    engine = create_db_engine(f"sqlite:///{tmp_path / 'x.db'}")
    migrate(engine)
    now_ms = int(time.time() * 1000)
    try:

        async def main() -> None:
            writer = PositionWriter(engine)
            writer.start()
            worker = IngestWorker(
                broker.address, pipeline(), writer, client_id="xixin-ingest-gw1-1"
            )
            ready = asyncio.Event()
            task = asyncio.create_task(worker.run(ready))
            await ready.wait()
            saved = broker.config_path.parent / "mosquitto.db"
            while not saved.exists():  # the broker has saved the session (autosave: 1 s)
                await asyncio.sleep(0.05)
            first = broker.pid
            assert first is not None
            os.kill(first, signal.SIGKILL)
            while broker.running:
                await asyncio.sleep(0.01)
            await asyncio.to_thread(broker.restart_if_dead)
            async with MqttClient(broker.address.client_options("pub"), lambda *_: None) as pub:
                for n in range(40):
                    await pub.publish(topics.gps(DEVICES[n % 5]), beacon(n, now_ms), qos=1)
            while stored(engine) < 40:
                await asyncio.sleep(0.05)
            await worker.close()
            task.cancel()
            await asyncio.to_thread(writer.stop)

        asyncio.run(main())
        assert stored(engine) == 40
    finally:
        broker.stop()
