"""A durable writer of whole rows keyed by their primary key (the command outbox, the alarm
queue): each item is the row's complete new state, written as an UPDATE or, for a new key, an
INSERT, in submission order — so writing a journal segment again after a crash is harmless.

`submit(items)` returns at once; `await durable()` waits until everything submitted so far is
committed or in the journal (on disk), the moment an API may answer that a change is kept.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy
from sqlalchemy import Table

from gateway.durable import DurableWrapper, DurableWriter

Row = tuple[str, dict[str, Any]]  # (table name, complete row)

_decode_row = msgspec.json.Decoder(tuple[str, dict[str, Any]]).decode


class NotDurableError(RuntimeError):
    """A change could not be made durable in time (the journal's disk is stuck)."""


class RowWriter(DurableWrapper[Row]):
    def __init__(
        self,
        engine: sqlalchemy.Engine,
        tables: list[Table],
        *,
        name: str,
        journal_dir: Path | None = None,
        update_only: frozenset[str] = frozenset(),
        logger: logging.Logger | None = None,
    ) -> None:
        """`tables`: the tables it writes (single-column primary keys); rows of those named in
        `update_only` change existing rows only (a device record's stun flag)."""
        self.engine = engine
        self._tables = {t.name: t for t in tables}
        self._update_only = update_only
        self._lock = threading.Lock()
        self._submitted = 0
        self._durable = 0
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.core: DurableWriter[Row] = DurableWriter(
            self._write,
            name=name,
            label=f"{name}",
            noun="rows",
            encode=msgspec.json.encode,
            decode=_decode_row,
            journal_dir=journal_dir,
            memory_limit=0 if journal_dir else 20_000,  # journal first: on disk at once
            max_batch=500,
            max_wait=0.02,
            logger=logger,
        )

    def submit(self, rows: list[Row]) -> None:
        if not rows:
            return
        with self._lock:
            self._submitted += 1
            seq = self._submitted
        self.core.submit(rows, lambda: self._settled(seq))

    def _settled(self, seq: int) -> None:
        with self._lock:
            self._durable = max(self._durable, seq)
            ready = [w for w in self._waiters if w[0] <= self._durable]
            self._waiters = [w for w in self._waiters if w[0] > self._durable]
        for _, loop, future in ready:
            loop.call_soon_threadsafe(_resolve, future)

    async def durable(self, timeout: float = 10.0) -> None:
        """Wait until every row submitted so far is committed or journalled."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._durable >= self._submitted:
                return
            self._waiters.append((self._submitted, loop, future))
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError as exc:
            raise NotDurableError(f"{self.core.label}: not on disk after {timeout:g} s") from exc

    def _write(self, batch: list[Row]) -> None:
        with self.engine.begin() as conn:
            for name, row in batch:
                table = self._tables[name]
                (key,) = table.primary_key.columns
                updated = conn.execute(
                    table.update().where(key == row[key.name]).values(row)
                ).rowcount
                if not updated and name not in self._update_only:
                    conn.execute(table.insert().values(row))


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
