"""Gateway events off the hot path: batched into the database by one writer thread, and fanned
out to live subscribers (console WebSockets) through bounded queues."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from typing import Any

import sqlalchemy

from gateway.events import GatewayEvent
from gateway.store.schema import floor_events, presence_events

log = logging.getLogger(__name__)

_STOP = None


class EventWriter:
    """One thread owns the database writes; `submit` never blocks the event loop."""

    def __init__(
        self,
        engine: sqlalchemy.Engine,
        *,
        max_batch: int = 500,
        max_wait: float = 0.2,
        logger: logging.Logger | None = None,
    ) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.log = logger or log
        self._queue: queue.Queue[GatewayEvent | None] = queue.Queue(maxsize=100_000)
        self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
        self.written = 0
        self.dropped = 0

    def start(self) -> None:
        self._thread.start()

    def submit(self, events: list[GatewayEvent]) -> None:
        for event in events:
            try:
                self._queue.put_nowait(event)
            except queue.Full:
                self.dropped += 1

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch = [first] if first is not None else []
            stop = first is None
            while not stop and len(batch) < self.max_batch:
                try:
                    item = self._queue.get(timeout=self.max_wait)
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                else:
                    batch.append(item)
            if batch:
                self._write(batch)
            if stop:
                return

    def _write(self, batch: list[GatewayEvent]) -> None:
        floors: list[dict[str, Any]] = []
        presence: list[dict[str, Any]] = []
        for event in batch:
            ts = event.wall_ms / 1000
            if event.kind == "floor":
                data = event.data
                floors.append(
                    {
                        "ts": ts,
                        "floor_key": data["floor"],
                        "event": data["event"],
                        "device": event.device,
                        "burst": data.get("burst"),
                        "reason": data.get("reason"),
                        "priority": data.get("priority"),
                    }
                )
            elif event.kind == "presence":
                presence.append(
                    {
                        "device": event.device,
                        "state": event.data["state"],
                        "reason": event.data.get("reason"),
                        "ts": ts,
                    }
                )
        try:
            with self.engine.begin() as conn:
                if floors:
                    conn.execute(floor_events.insert(), floors)
                if presence:
                    conn.execute(presence_events.insert(), presence)
            self.written += len(floors) + len(presence)
        except sqlalchemy.exc.SQLAlchemyError:
            self.log.exception("could not store %d gateway events", len(batch))


class EventHub:
    """Fan-out of gateway events to live subscribers; a slow subscriber loses events, not us."""

    def __init__(self, maxsize: int = 1000) -> None:
        self.maxsize = maxsize
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self.maxsize)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(q)

    def publish(self, events: list[GatewayEvent]) -> None:
        if not self._subscribers:
            return
        for event in events:
            message = {
                "kind": event.kind,
                "device": event.device,
                "ts": event.wall_ms,
                **event.data,
            }
            for q in self._subscribers:
                if not q.full():
                    q.put_nowait(message)
