"""Real outages: the position writer across a PostgreSQL server stopped and started again, the
event writer across a SQLite file write-locked by another connection. Nothing is lost, the
threads live throughout, and the health-facing properties show the outage while it lasts."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from gateway.event_log import EventWriter
from gateway.events import GatewayEvent
from gateway.store.db import create_db_engine, migrate
from gateway.store.schema import floor_events
from gateway.tracking.model import Fix
from gateway.tracking.store import PositionReader, PositionWriter, fix_row
from tests.conftest import private_cluster
from xixin.pgcluster import PostgresCluster

DEADLINE_S = 120.0
T0 = 1_764_300_000.0


def until(
    predicate: Callable[[], Any], what: str, check: Callable[[], None] = lambda: None
) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        check()
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL server of this test's own: it is stopped and started in the middle."""
    yield from private_cluster()


def positions(start: int, count: int) -> list[Any]:
    return [
        fix_row(Fix(f"T{i % 8:03d}", T0 + i, 30.87 + i * 1e-6, 120.13, speed=1.0, battery=80,
                    attributes={"sat": 9} if i % 2 else {}, server_time=T0 + i + 0.5))
        for i in range(start, start + count)
    ]  # fmt: skip


def test_positions_survive_a_postgresql_outage(
    own_cluster: PostgresCluster, tmp_path: Path
) -> None:
    engine = create_db_engine(own_cluster.create_database("outage"))
    migrate(engine)
    journal = tmp_path / "journal" / "positions"
    writer = PositionWriter(
        engine, max_batch=100, max_wait=0.01, journal_dir=journal, memory_limit=300,
        backoff_max=0.5,
    )  # fmt: skip
    reader = PositionReader(engine)

    def alive() -> None:
        assert writer.alive, "the position writer thread died"

    try:
        writer.start()
        for start in range(0, 200, 20):
            writer.submit(positions(start, 20))
        until(lambda: writer.inserted == 200, "the first rows stored", alive)
        assert writer.outage_s == 0 and writer.problem() is None

        own_cluster.stop()
        for start in range(200, 800, 20):
            writer.submit(positions(start, 20))
            alive()
        # Memory holds 300 (and a batch in flight); the rest waits in the journal.
        until(lambda: writer.journal_items >= 200 and writer.outage_s > 0, "a journal", alive)
        until(lambda: writer.failures >= 3, "retries", alive)
        assert writer.pending == 600 and writer.backlog == 600
        problem = writer.problem()
        assert problem is not None
        assert problem.startswith("position writer: database unreachable for "), problem
        assert f"600 positions waiting ({writer.journal_items} in the journal)" in problem
        assert list(journal.iterdir())

        own_cluster.start()
        until(lambda: writer.pending == 0, "the backlog written", alive)
        assert reader.count() == 800 and writer.inserted == 800
        assert writer.outage_s == 0 and writer.problem() is None and writer.journal_items == 0
        assert list(journal.iterdir()) == []
        track = reader.track("T001", T0, T0 + 1000)
        assert [p.t for p in track] == [T0 + i for i in range(1, 800, 8)]
    finally:
        writer.stop()
        engine.dispose()


def floor_event(i: int) -> GatewayEvent:
    return GatewayEvent(
        "floor", f"T{i % 4:03d}", 1_764_300_000_000 + i,
        {"floor": "tg:grid-01", "event": "granted", "burst": i, "priority": "normal"},
    )  # fmt: skip


def test_events_survive_a_sqlite_database_locked_by_another_writer(tmp_path: Path) -> None:
    db_file = tmp_path / "xixin.db"
    engine = create_db_engine(f"sqlite:///{db_file}")
    migrate(engine)
    journal = tmp_path / "journal" / "events"
    writer = EventWriter(
        engine, max_batch=50, max_wait=0.01, journal_dir=journal, memory_limit=100,
        backoff_max=0.5,
    )  # fmt: skip

    def alive() -> None:
        assert writer.alive, "the event writer thread died"

    def stored() -> list[int]:
        with engine.connect() as conn:
            query = sqlalchemy.select(floor_events.c.burst).order_by(floor_events.c.id)
            return [row.burst for row in conn.execute(query)]

    try:
        writer.start()
        writer.submit([floor_event(i) for i in range(10)])
        until(lambda: writer.written == 10, "the first events stored", alive)
        holder = sqlite3.connect(db_file, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # held by another writer
        try:
            for start in range(10, 400, 10):
                # presence and command events are submitted too; commands are not stored here
                writer.submit([floor_event(i) for i in range(start, start + 10)])
            writer.submit([GatewayEvent("command", "T001", 0, {"id": "c1", "cmd": "stun"})])
            until(lambda: writer.failures >= 1 and writer.outage_s > 0, "a failed write", alive)
            until(lambda: writer.journal_items > 0, "the overflow journalled", alive)
            assert writer.backlog == 390 and writer.dropped == 0
            problem = writer.problem()
            assert problem is not None and "390 events waiting" in problem
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        until(lambda: writer.backlog == 0, "the backlog written", alive)
        assert stored() == list(range(400))  # every event, once, in order
        assert writer.problem() is None and list(journal.iterdir()) == []
    finally:
        writer.stop()
        engine.dispose()
