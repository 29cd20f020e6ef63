"""Ingest workers: MQTT connections in one shared-subscription group feeding a pipeline.

Each worker is one `MqttClient` subscribed to `$share/<group>/…` (MQTT 5 shared subscriptions:
the broker splits beacons across the group). What one socket read brings is queued; right after
the client has written its PUBACKs, the worker runs the pipeline on the whole read, hands the
accepted rows to the `PositionWriter` thread and runs the pipeline's batch analytics. A filtered
or malformed beacon is acknowledged like any other.

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
from typing import Final

from gateway.tracking.pipeline import FlushResult, TrackingPipeline, ingest_subscriptions
from gateway.tracking.store import PositionWriter
from transport.address import BrokerAddress
from transport.client import MqttClient

log = logging.getLogger(__name__)

FlushSink = Callable[[FlushResult], None]
ANALYSE_INTERVAL_S: Final = 0.02  # live state, geofences and alarms lag reads by at most this
ANALYSE_BATCH: Final = 2000  # ...or run at once when this many accepted fixes wait


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
            broker.client_options(
                client_id,
                username=username,
                password=password,
                subscriptions=ingest_subscriptions(share_group),
            ),
            self._on_message,
            logger=self.log,
        )
        self.messages = 0
        self._inbox: list[tuple[str, bytes, float]] = []
        self._analysis: asyncio.TimerHandle | None = None

    def _on_message(self, topic: str, payload: bytes, qos: int) -> None:
        # Only queued here: the client writes this read's PUBACKs on the next loop callback,
        # and the pipeline runs on the one after it. The broker (whose QoS 1 window towards
        # us is small, 100 on the managed broker) then sends the next messages while these
        # are processed, instead of waiting for the whole read to go through the pipeline.
        inbox = self._inbox
        inbox.append((topic, payload, self.clock()))
        if len(inbox) == 1:
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Run what has been read through the pipeline's hot path and hand rows to the writer;
        the per-batch analytics follow within ANALYSE_INTERVAL_S (or at once past
        ANALYSE_BATCH fixes), so their fixed cost is paid per few reads, not per read."""
        inbox, self._inbox = self._inbox, []
        self.messages += len(inbox)
        handle = self.pipeline.handle
        for topic, payload, received in inbox:
            try:
                handle(topic, payload, received)
            except Exception as exc:  # handle() counts bad input itself; this is a last resort
                # so that one failing message never loses the rest of the read (already taken)
                self.pipeline.internal_error(topic, exc)
        rows = self.pipeline.take_rows()
        if rows:
            self.writer.submit(rows)
        if self.pipeline.pending_fixes >= ANALYSE_BATCH:
            self.analyse()
        elif self._analysis is None:
            loop = asyncio.get_running_loop()
            self._analysis = loop.call_later(ANALYSE_INTERVAL_S, self.analyse)

    def analyse(self) -> None:
        if self._analysis is not None:
            self._analysis.cancel()
            self._analysis = None
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
        self.analyse()
