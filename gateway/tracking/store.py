"""Position storage: a batched writer thread and the read queries of replay and live views.

The writer owns one DBAPI connection and commits whole batches: SQLite `INSERT OR IGNORE`
through executemany; PostgreSQL COPY into a staging table, then one `INSERT … SELECT … ON
CONFLICT DO NOTHING`. Both skip a (device, fix_time) already stored (or twice in the batch),
which is how a re-sent QoS 1 beacon stays single.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import logging
import operator
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import msgspec
import sqlalchemy
from sqlalchemy.exc import SQLAlchemyError

from gateway.durable import DurableWrapper, DurableWriter
from gateway.tracking.errors import TrackingStoreError
from gateway.tracking.model import Fix, TrackPoint

log = logging.getLogger(__name__)

PositionRow = tuple[
    str, float, float, float, float,
    float | None, float | None, float | None, float | None, int | None, bool, str | None,
]  # fmt: skip
COLUMNS: Final = (
    "device, fix_time, server_time, lat, lon, speed, course, altitude, accuracy, battery, "
    "valid, attributes"
)
_SQLITE_INSERT: Final = (
    f"INSERT OR IGNORE INTO positions ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# PostgreSQL: COPY the batch into a session-private staging table, then move it over skipping
# stored keys. COPY is ~3x faster than any INSERT form here, and binary COPY ~5x cheaper than text
# COPY on the writer's side (no float -> text per value; the writer shares the GIL with the
# ingest loop). The staging table's attributes are text (already-encoded JSON, cast on the move);
# it empties at commit.
_PG_STAGE: Final = (
    "CREATE TEMP TABLE IF NOT EXISTS positions_stage (LIKE positions INCLUDING DEFAULTS) "
    "ON COMMIT DELETE ROWS"
)
_PG_STAGE_TEXT: Final = "ALTER TABLE positions_stage ALTER COLUMN attributes TYPE text"
_PG_COPY: Final = f"COPY positions_stage ({COLUMNS}) FROM STDIN (FORMAT BINARY)"
_PG_COPY_TYPES: Final = (
    "varchar", "float8", "float8", "float8", "float8", "float8", "float8", "float8", "float8",
    "int2", "bool", "text",
)  # fmt: skip
_PG_MOVE: Final = (
    f"INSERT INTO positions ({COLUMNS}) SELECT {COLUMNS.replace('attributes', 'attributes::json')} "
    "FROM positions_stage ON CONFLICT DO NOTHING"
)

SQLITE_WRITER_CACHE_KIB: Final = 65_536

CommitCallback = Callable[[int, int], None]
"""on_commit(rows_offered, rows_inserted) — called on the writer thread after each commit."""


_encode = msgspec.json.Encoder().encode


def fix_row(fix: Fix) -> PositionRow:
    attributes = fix.attributes
    if fix.source != "native":
        attributes = {**attributes, "src": fix.source}
    return (
        fix.device, fix.fix_time, fix.server_time, fix.lat, fix.lon, fix.speed, fix.course,
        fix.altitude, fix.accuracy, fix.battery, fix.valid,
        _encode(attributes).decode() if attributes else None,
    )  # fmt: skip


class BatchInserter:
    """Insert position rows in batches on one DBAPI connection; returns rows really inserted."""

    def __init__(self, engine: sqlalchemy.Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        if self.dialect not in ("sqlite", "postgresql"):
            raise TrackingStoreError(f"positions need SQLite or PostgreSQL, not {self.dialect}")
        self._connection: Any = None

    def _connect(self) -> Any:
        if self._connection is None:
            connection = self.engine.raw_connection()
            try:
                cursor = connection.cursor()
                if self.dialect == "sqlite":
                    # Rows of many devices land on as many B-tree leaves; a page cache that holds
                    # them all (64 MiB instead of SQLite's 2 MiB) turns re-reads into cache hits.
                    cursor.execute(f"PRAGMA cache_size=-{SQLITE_WRITER_CACHE_KIB}")
                else:
                    cursor.execute(_PG_STAGE)
                    cursor.execute(_PG_STAGE_TEXT)
                cursor.close()
                connection.commit()
            except Exception:
                with contextlib.suppress(Exception):
                    connection.close()
                raise
            self._connection = connection
        return self._connection

    def insert(self, rows: Sequence[PositionRow]) -> int:
        """Insert and commit `rows`; TrackingStoreError on any failure (connecting included)."""
        if not rows:
            return 0
        try:
            connection = self._connect()
            cursor = connection.cursor()
            try:
                if self.dialect == "sqlite":
                    before = connection.total_changes
                    cursor.executemany(_SQLITE_INSERT, rows)
                    connection.commit()
                    return int(connection.total_changes - before)
                with cursor.copy(_PG_COPY) as copy:
                    copy.set_types(_PG_COPY_TYPES)
                    write = copy.write_row
                    for row in rows:
                        write(row)
                cursor.execute(_PG_MOVE)
                inserted = int(cursor.rowcount)
                connection.commit()
                return inserted
            finally:
                cursor.close()
        except Exception as exc:
            self.close()
            raise TrackingStoreError(f"inserting {len(rows)} positions failed: {exc}") from exc

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # closing a broken connection may fail too; it is gone either way
                log.debug("closing the position connection failed", exc_info=True)


_decode_row = msgspec.json.Decoder(list).decode


def encode_row(row: PositionRow) -> bytes:
    """A row as one journal line (JSON array; floats round-trip exactly)."""
    return _encode(row)


def decode_row(line: bytes) -> PositionRow:
    row: PositionRow = tuple(_decode_row(line))
    return row


class PositionWriter(DurableWrapper[PositionRow]):
    """One thread owns position writes; `submit` never blocks the MQTT reader.

    A `DurableWriter` (gateway/durable.py): rows wait in memory until committed; a failed batch
    (database down, connection refused, …) is retried with capped backoff rather than dropped;
    past `memory_limit` rows they go to the on-disk journal in `journal_dir` and are written when
    the database is back. So a database restart costs latency, not positions.
    """

    def __init__(
        self,
        engine: sqlalchemy.Engine,
        *,
        max_batch: int = 5000,
        max_wait: float = 0.05,
        on_commit: CommitCallback | None = None,
        retry_delay: float = 0.1,
        backoff_max: float = 5.0,
        journal_dir: Path | None = None,
        memory_limit: int = 100_000,
        logger: logging.Logger | None = None,
        **durable: Any,
    ) -> None:
        self.inserter = BatchInserter(engine)
        self.on_commit = on_commit
        self.log = logger or log
        self.offered = 0
        self.inserted = 0
        self.core: DurableWriter[PositionRow] = DurableWriter(
            self._insert,
            name="position-writer",
            label="position writer",
            noun="positions",
            encode=encode_row,
            decode=decode_row,
            journal_dir=journal_dir,
            memory_limit=memory_limit,
            max_batch=max_batch,
            max_wait=max_wait,
            backoff_initial=retry_delay,
            backoff_max=backoff_max,
            logger=self.log,
            **durable,
        )
        self.submit = self.core.submit

    def stop(self, timeout: float = 30.0) -> None:
        """Write what is queued (or journal it while the database is down), then stop."""
        self.core.stop(timeout)
        if not self.core.alive:
            self.inserter.close()

    def _insert(self, batch: list[PositionRow]) -> None:
        inserted = self.inserter.insert(batch)  # raises on any failure, connect included
        self.offered += len(batch)
        self.inserted += inserted
        if self.on_commit is not None:
            try:
                self.on_commit(len(batch), inserted)
            except Exception:  # the rows are committed: a failing observer must not retry them
                self.log.exception("position on_commit callback failed")

    @property
    def pending(self) -> int:
        """Rows submitted and not yet committed (memory and journal)."""
        return self.core.backlog


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while a bulk result is materialised.

    A day of positions is ~17,000 row tuples; allocating them triggers dozens of generation-0
    collections and, in a process holding a web framework's objects, the odd full collection
    (tens of ms). Row tuples of floats cannot form cycles, so nothing is lost by waiting.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _driver_errors() -> tuple[type[Exception], ...]:
    import sqlite3

    errors: list[type[Exception]] = [sqlite3.Error]
    try:
        import psycopg
    except ImportError:  # PostgreSQL support is optional at run time
        return tuple(errors)
    errors.append(psycopg.Error)
    return tuple(errors)


_READ_ERRORS: tuple[type[Exception], ...] = (SQLAlchemyError, *_driver_errors())


# ---- reads --------------------------------------------------------------------------------------

FULL_COLUMNS: Final = "fix_time, lat, lon, speed, course, altitude, accuracy, battery"
# What a map replay draws (position, heading, speed): 5 of 8 columns, ~40 % fewer objects.
REPLAY_COLUMNS: Final = "fix_time, lat, lon, speed, course"
_NO_EXTRAS: Final = (None, None, None)  # altitude, accuracy, battery of a replay-only row
_as_point: Final[Callable[[tuple[Any, ...]], TrackPoint]] = functools.partial(
    tuple.__new__, TrackPoint
)
_TRACK_SQL: Final = (
    "SELECT {columns} FROM positions "
    "WHERE device = {p} AND fix_time >= {p} AND fix_time < {p} ORDER BY fix_time LIMIT {p}"
)


class PositionReader:
    """Read queries on positions, straight on the driver for speed (a day is 17,280 rows)."""

    def __init__(self, engine: sqlalchemy.Engine) -> None:
        self.engine = engine
        marker = "?" if engine.dialect.name == "sqlite" else "%s"
        self._binary = engine.dialect.name == "postgresql"
        self._track_sql = {
            True: _TRACK_SQL.format(columns=FULL_COLUMNS, p=marker),
            False: _TRACK_SQL.format(columns=REPLAY_COLUMNS, p=marker),
        }
        self._last_sql = (
            "SELECT fix_time, lat, lon, speed, course, altitude, accuracy, battery "
            f"FROM positions WHERE device = {marker} ORDER BY fix_time DESC LIMIT 1"
        )

    def track_rows(
        self, device: str, start: float, end: float, limit: int = 1_000_000, *, full: bool = True
    ) -> list[tuple[Any, ...]]:
        """Raw (fix_time, lat, lon, speed, course[, altitude, accuracy, battery]) rows, in order
        of fix time; the last three only when `full`."""
        try:
            with self.engine.connect() as conn:
                # Straight on the DBAPI cursor: a day is 17,280 rows and SQLAlchemy's Row
                # wrapping would cost more than the index scan itself.
                raw: Any = conn.connection.dbapi_connection
                # psycopg's binary protocol halves the cost of 138,000 floats.
                cursor = raw.cursor(binary=True) if self._binary else raw.cursor()
                try:
                    cursor.execute(self._track_sql[full], (device, start, end, limit))
                    with gc_paused():
                        rows: list[tuple[Any, ...]] = cursor.fetchall()
                finally:
                    cursor.close()
                return rows
        except _READ_ERRORS as exc:
            raise TrackingStoreError(f"reading the track of {device!r} failed: {exc}") from exc

    @staticmethod
    def point(row: tuple[Any, ...]) -> TrackPoint:
        """A TrackPoint from a `track_rows` row of either width."""
        return _as_point(row if len(row) == 8 else row + _NO_EXTRAS)

    def track(
        self, device: str, start: float, end: float, limit: int = 1_000_000, *, full: bool = True
    ) -> list[TrackPoint]:
        rows = self.track_rows(device, start, end, limit, full=full)
        with gc_paused():
            # Straight through C (map, tuple concatenation, tuple.__new__ as namedtuple._make
            # does it): a Python-level constructor call per point costs ~2x as much.
            if full:
                return list(map(_as_point, rows))
            return list(map(_as_point, map(operator.add, rows, itertools.repeat(_NO_EXTRAS))))

    def last_point(self, device: str) -> TrackPoint | None:
        try:
            with self.engine.connect() as conn:
                row = conn.exec_driver_sql(self._last_sql, (device,)).first()
        except SQLAlchemyError as exc:
            raise TrackingStoreError(f"reading the last position of {device!r} failed") from exc
        return None if row is None else TrackPoint(*row)

    def count(self, device: str | None = None) -> int:
        query = "SELECT count(*) FROM positions"
        try:
            with self.engine.connect() as conn:
                if device is None:
                    return int(conn.exec_driver_sql(query).scalar_one())
                marker = "?" if self.engine.dialect.name == "sqlite" else "%s"
                return int(
                    conn.exec_driver_sql(f"{query} WHERE device = {marker}", (device,)).scalar_one()
                )
        except SQLAlchemyError as exc:
            raise TrackingStoreError(f"counting positions failed: {exc}") from exc
