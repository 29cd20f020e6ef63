"""Gateway events off the hot path: batched into the database by one durable writer thread
(retried, journalled past a bound: gateway/durable.py), and fanned out to live subscribers
(console WebSockets) through bounded queues."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import msgspec
import sqlalchemy

from gateway.durable import DurableWrapper, DurableWriter
from gateway.events import GatewayEvent
from gateway.store.schema import floor_events, presence_events

log = logging.getLogger(__name__)

#: The kinds stored here (floor_events, presence_events); alarms are stored by tracking.
STORED_KINDS: Final = frozenset({"floor", "presence"})

_decode_event = msgspec.json.Decoder(tuple[str, str | None, int, dict[str, Any]]).decode


def encode_event(event: GatewayEvent) -> bytes:
    """An event as one journal line: [kind, device, wall_ms, data]."""
    return msgspec.json.encode((event.kind, event.device, event.wall_ms, event.data))


def decode_event(line: bytes) -> GatewayEvent:
    kind, device, wall_ms, data = _decode_event(line)
    return GatewayEvent(kind, device, wall_ms, data)


class EventWriter(DurableWrapper[GatewayEvent]):
    """One thread owns the database writes; `submit` never blocks the event loop, never drops.

    A `DurableWriter` (gateway/durable.py): a failed batch (database locked or down) is retried
    with capped backoff; past `memory_limit` events they go to the journal in `journal_dir`.
    """

    def __init__(
        self,
        engine: sqlalchemy.Engine,
        *,
        max_batch: int = 500,
        max_wait: float = 0.2,
        journal_dir: Path | None = None,
        memory_limit: int = 20_000,
        logger: logging.Logger | None = None,
        **durable: Any,
    ) -> None:
        self.engine = engine
        self.log = logger or log
        self.written = 0
        self.core: DurableWriter[GatewayEvent] = DurableWriter(
            self._write,
            name="event-writer",
            label="event writer",
            noun="events",
            encode=encode_event,
            decode=decode_event,
            journal_dir=journal_dir,
            memory_limit=memory_limit,
            max_batch=max_batch,
            max_wait=max_wait,
            logger=self.log,
            **durable,
        )

    def submit(self, events: list[GatewayEvent]) -> None:
        stored = [event for event in events if event.kind in STORED_KINDS]
        if stored:
            self.core.submit(stored)

    @property
    def dropped(self) -> int:
        """Events lost: only ones the journal could not encode (logged); never a full queue."""
        return self.core.lost

    def _write(self, batch: list[GatewayEvent]) -> None:
        """Store a batch in one transaction, or raise (the writer retries the same batch)."""
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
        with self.engine.begin() as conn:
            if floors:
                conn.execute(floor_events.insert(), floors)
            if presence:
                conn.execute(presence_events.insert(), presence)
        self.written += len(floors) + len(presence)


class EventHub:
    """Fan-out of gateway events to live subscribers; a slow subscriber loses events, not us."""

    def __init__(self, maxsize: int = 1000) -> None:
        self.maxsize = maxsize
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        # In-process consumers called with every published batch (on the event loop); one
        # that raises is logged and the others still get the batch.
        self.listeners: list[Callable[[list[GatewayEvent]], None]] = []

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self.maxsize)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(q)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(self, events: list[GatewayEvent]) -> None:
        for listener in self.listeners:
            try:
                listener(events)
            except Exception:
                log.exception("event hub listener failed")
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
