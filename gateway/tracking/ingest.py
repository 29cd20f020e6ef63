"""Ingest workers: MQTT connections in one shared-subscription group feeding a pipeline.

Each worker is one `MqttClient` subscribed to `$share/<group>/…` (MQTT 5 shared subscriptions:
the broker splits beacons across the group). What one socket read brings is queued; the worker
runs the pipeline on the whole read on the next loop callback, hands the accepted rows to the
`PositionWriter` thread and runs the pipeline's batch analytics. The read's PUBACKs go out when
the writer has kept its rows (committed, or in its on-disk journal); a read with nothing to
store — filtered or malformed beacons, which are counted — is acknowledged at once. The session
is persistent: while the ingest is away the broker queues its beacons, and what it had not
acknowledged is sent again (and stored once: the primary key drops repeats).

Workers of one process share one pipeline, so per-device state (filters, geofences, alarms) is
exact. Worker *processes* each have their own pipeline and the broker spreads a device's
beacons across them: storage stays exact (the primary key drops repeats), but each process's
stateful rules then see only part of a device's track — run analytics in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
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
# The broker keeps an ingest session (and queues beacons for it) this long while it is away:
# a gateway down for less loses nothing it acknowledged to a terminal.
SESSION_EXPIRY_S: Final = 7 * 24 * 3600


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
        share_group: str | None = None,
        on_flush: FlushSink | None = None,
        clock: Callable[[], float] = time.time,
        logger: logging.Logger | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.writer = writer
        self.on_flush = on_flush
        self.clock = clock
        self.log = logger or log
        options = broker.client_options(
            client_id,
            username=username,
            password=password,
            subscriptions=ingest_subscriptions(share_group),
        )
        # A persistent session with acks sent once the beacons are kept (committed or in the
        # writer's journal): what the broker acknowledged to a terminal is queued for us while
        # we are away and resent if we die before keeping it. The client id must be the same
        # at every start (the broker keeps the session by it).
        self.client = MqttClient(
            dataclasses.replace(
                options, clean_start=False, session_expiry_s=SESSION_EXPIRY_S, manual_ack=True
            ),
            self._on_message,
            logger=self.log,
        )
        self.messages = 0
        self.acked = 0
        self._inbox: list[tuple[str, bytes, float]] = []
        self._ack_ids: list[int] = []  # QoS 1 packet ids of the inbox's messages
        self._ack_connection = 0  # the connection they came on
        self._analysis: asyncio.TimerHandle | None = None

    def _on_message(self, topic: str, payload: bytes, qos: int) -> None:
        # Only queued here: the pipeline runs on the whole read on the next loop callback.
        inbox = self._inbox
        inbox.append((topic, payload, self.clock()))
        packet_id = self.client.current_packet_id
        if packet_id is not None:
            connection = self.client.epoch
            if connection != self._ack_connection:  # a new connection: the old ids are void
                self._ack_ids, self._ack_connection = [], connection
            self._ack_ids.append(packet_id)
        if len(inbox) == 1:
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Run what has been read through the pipeline's hot path and hand rows to the writer;
        the per-batch analytics follow within ANALYSE_INTERVAL_S (or at once past
        ANALYSE_BATCH fixes), so their fixed cost is paid per few reads, not per read."""
        inbox, self._inbox = self._inbox, []
        ack_ids, self._ack_ids = self._ack_ids, []
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
            # Acked when the rows are kept; the refused and filtered ones of this read with them.
            self.writer.submit(rows, self._ack_later(self._ack_connection, ack_ids))
        else:
            self._ack(self._ack_connection, ack_ids)
        if self.pipeline.pending_fixes >= ANALYSE_BATCH:
            self.analyse()
        elif self._analysis is None:
            loop = asyncio.get_running_loop()
            self._analysis = loop.call_later(ANALYSE_INTERVAL_S, self.analyse)

    def _ack(self, connection: int, packet_ids: list[int]) -> None:
        self.acked += self.client.ack(connection, packet_ids)

    def _ack_later(self, connection: int, packet_ids: list[int]) -> Callable[[], None]:
        """What the writer thread calls once the rows are kept: the acks go out on our loop."""
        loop = asyncio.get_running_loop()

        def durable() -> None:
            # After the loop has stopped there is nobody to ack to: the broker resends them.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._ack, connection, packet_ids)

        return durable

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
