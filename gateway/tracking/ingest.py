"""Ingest workers: MQTT connections in one shared-subscription group feeding a pipeline.

Each worker is one `MqttClient` subscribed to `$share/<group>/…` (MQTT 5 shared subscriptions:
the broker splits beacons across the group). Messages are handled on the reader task; once per
event-loop turn the worker hands the accepted rows to the `PositionWriter` thread and runs the
pipeline's batch analytics. The broker's PUBACK goes out as soon as a message is parsed off the
socket — a filtered or malformed beacon is acknowledged like any other.

Workers of one process share one pipeline, so per-device state (filters, geofences, alarms) is
exact. Worker *processes* each have their own pipeline and the broker spreads a device's
beacons across them: storage stays exact (the primary key drops repeats), but each process's
stateful rules then see only part of a device's track — run analytics in one process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gateway.broker import BrokerAddress
from gateway.mqtt import ClientOptions, MqttClient
from gateway.tracking.pipeline import FlushResult, TrackingPipeline, ingest_subscriptions
from gateway.tracking.store import PositionWriter

log = logging.getLogger(__name__)

FlushSink = Callable[[FlushResult], None]


class IngestWorker:
    def __init__(
        self,
        broker: BrokerAddress,
        pipeline: TrackingPipeline,
        writer: PositionWriter,
        *,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        share_group: str | None = "xixin-ingest",
        on_flush: FlushSink | None = None,
        clock: Callable[[], float] = time.time,
        logger: logging.Logger | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.writer = writer
        self.on_flush = on_flush
        self.clock = clock
        self.log = logger or log
        self.client = MqttClient(
            ClientOptions(
                host=broker.host,
                port=broker.port,
                client_id=client_id,
                username=username,
                password=password,
                subscriptions=ingest_subscriptions(share_group),
            ),
            self._on_message,
            logger=self.log,
        )
        self.messages = 0
        self._flush_scheduled = False

    def _on_message(self, topic: str, payload: bytes, qos: int) -> None:
        self.messages += 1
        self.pipeline.handle(topic, payload, self.clock())
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        rows = self.pipeline.take_rows()
        if rows:
            self.writer.submit(rows)
        result = self.pipeline.flush(self.clock())
        if self.on_flush is not None and (result.events or result.status or result.positions):
            try:
                self.on_flush(result)
            except Exception:
                self.log.exception("tracking flush sink failed")

    async def run(self, ready: asyncio.Event | None = None) -> None:
        await self.client.run(ready)

    async def close(self) -> None:
        await self.client.close()
        self.flush()
