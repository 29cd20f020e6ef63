"""Position storage on SQLite (WAL) and a real PostgreSQL: migration, batched writes, reads."""

from __future__ import annotations

import json
import threading

import pytest
import sqlalchemy
from alembic import command

from gateway.store.db import alembic_config, current_revision, migrate
from gateway.tracking.errors import TrackingStoreError
from gateway.tracking.model import Fix, TrackPoint
from gateway.tracking.schema import positions
from gateway.tracking.store import BatchInserter, PositionReader, PositionWriter, fix_row

T0 = 1_764_300_000.0


def rows(device: str, count: int, start: float = T0, step: float = 5.0) -> list[Fix]:
    return [
        Fix(device, start + i * step, 30.87 + i * 1e-5, 120.13, speed=1.0, battery=80,
            attributes={"sat": 9}, server_time=start + i * step + 0.5)
        for i in range(count)
    ]  # fmt: skip


def test_migration_reaches_head_and_the_table_is_keyed(engine: sqlalchemy.Engine) -> None:
    from alembic.script import ScriptDirectory

    from gateway.store.db import alembic_config

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert current_revision(engine) == head
    inspector = sqlalchemy.inspect(engine)
    assert inspector.get_pk_constraint("positions")["constrained_columns"] == [
        "device",
        "fix_time",
    ]
    assert {"track_events", "geofences", "checkpoints"} <= set(inspector.get_table_names())
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_migration_down_and_up_again(engine: sqlalchemy.Engine) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0001_initial")
    assert current_revision(engine) == "0001_initial"
    assert "positions" not in sqlalchemy.inspect(engine).get_table_names()
    migrate(engine)
    assert "positions" in sqlalchemy.inspect(engine).get_table_names()


def test_postgresql_replay_is_an_index_only_scan(pg_engine: sqlalchemy.Engine) -> None:
    """0004: the primary key carries the replay columns; after a vacuum (autovacuum's job in
    production) the replay query reads no heap page at all, and 0003 gets the plain key back."""
    BatchInserter(pg_engine).insert([fix_row(f) for f in rows("T001", 2000) + rows("T002", 2000)])
    with pg_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE positions")
        options = conn.exec_driver_sql(
            "SELECT reloptions FROM pg_class WHERE relname = 'positions'"
        ).scalar_one()
        assert "autovacuum_vacuum_insert_scale_factor=0" in options
        reader = PositionReader(pg_engine)
        sql = (
            reader._track_sql[False]
            .replace("%s", "{}")
            .format("'T001'", T0 + 100, T0 + 5000, 1_000_000)
        )
        plan = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}"))
    assert "Index Only Scan using pk_positions" in plan, plan
    assert "Heap Fetches: 0" in plan, plan
    assert len(reader.track("T001", T0 + 100, T0 + 5000, full=False)) == 980
    config = alembic_config()
    with pg_engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0003_recordings")
    with pg_engine.connect() as conn:
        included = conn.exec_driver_sql(
            "SELECT indnatts - indnkeyatts FROM pg_index "
            "WHERE indexrelid = 'pk_positions'::regclass"
        ).scalar_one()
    assert included == 0
    migrate(pg_engine, revision="0004_positions_covering")
    assert current_revision(pg_engine) == "0004_positions_covering"
    migrate(pg_engine)  # and on to the newest


def test_batch_insert_skips_stored_duplicates(engine: sqlalchemy.Engine) -> None:
    inserter = BatchInserter(engine)
    batch = [fix_row(f) for f in rows("T001", 100)]
    assert inserter.insert(batch) == 100
    again = batch[50:] + [fix_row(f) for f in rows("T001", 10, start=T0 + 10_000)]
    assert inserter.insert(again) == 10
    inserter.close()
    assert PositionReader(engine).count("T001") == 110


def test_duplicates_inside_one_batch_are_stored_once(engine: sqlalchemy.Engine) -> None:
    inserter = BatchInserter(engine)
    batch = [fix_row(f) for f in rows("T005", 3)]
    assert inserter.insert(batch + batch[:2]) == 3
    inserter.close()
    assert PositionReader(engine).count("T005") == 3


def test_track_reads_a_range_in_order_with_all_columns(engine: sqlalchemy.Engine) -> None:
    inserter = BatchInserter(engine)
    fixes = rows("T001", 50) + rows("T002", 50)
    fixes[3].source = "owntracks"
    inserter.insert([fix_row(f) for f in reversed(fixes)])
    inserter.close()
    reader = PositionReader(engine)
    track = reader.track("T001", T0 + 10, T0 + 50)
    assert [p.t for p in track] == [T0 + 5 * i for i in range(2, 10)]
    assert track[0].lat == pytest.approx(30.87002) and track[0].battery == 80
    assert all(type(p) is TrackPoint and len(p) == 8 for p in track)
    replay = reader.track("T001", T0 + 10, T0 + 50, full=False)  # what the replay API reads
    assert replay == [p._replace(altitude=None, accuracy=None, battery=None) for p in track]
    assert replay[0].speed == 1.0 and replay[0].battery is None
    last = reader.last_point("T002")
    assert last is not None and last.t == T0 + 49 * 5
    assert reader.last_point("nobody") is None
    with engine.connect() as conn:
        stored = conn.execute(
            sqlalchemy.select(
                positions.c.attributes, positions.c.valid, positions.c.server_time
            ).where(positions.c.device == "T001", positions.c.fix_time == T0 + 15)
        ).one()
    attributes = (
        stored.attributes if isinstance(stored.attributes, dict) else json.loads(stored.attributes)
    )
    assert attributes == {"sat": 9, "src": "owntracks"}
    assert stored.valid is True and stored.server_time == T0 + 15.5


def test_writer_thread_batches_and_reports_commits(engine: sqlalchemy.Engine) -> None:
    committed: list[tuple[int, int]] = []
    done = threading.Event()

    def on_commit(offered: int, inserted: int) -> None:
        committed.append((offered, inserted))
        if sum(o for o, _ in committed) >= 2000:
            done.set()

    writer = PositionWriter(engine, max_batch=500, max_wait=0.01, on_commit=on_commit)
    writer.start()
    fixes = rows("T003", 2000, step=1.0)
    for i in range(0, 2000, 100):
        writer.submit([fix_row(f) for f in fixes[i : i + 100]])
    assert done.wait(20)
    writer.stop()
    assert sum(o for o, _ in committed) == 2000
    assert sum(i for _, i in committed) == 2000
    assert all(o <= 500 for o, _ in committed)
    assert writer.pending == 0 and writer.inserted == 2000
    assert PositionReader(engine).count("T003") == 2000


def test_writer_retries_a_failed_batch_instead_of_losing_it(
    sqlite_engine: sqlalchemy.Engine,
) -> None:
    with sqlite_engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE positions RENAME TO positions_away")
    writer = PositionWriter(sqlite_engine, max_wait=0.01, retry_delay=0.05)
    writer.start()
    writer.submit([fix_row(f) for f in rows("T001", 5)])
    deadline = threading.Event()
    while writer.failures < 2:
        deadline.wait(0.02)
    with sqlite_engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE positions_away RENAME TO positions")
    writer.stop()
    assert writer.inserted == 5 and writer.pending == 0
    assert PositionReader(sqlite_engine).count() == 5


def test_inserter_wraps_database_errors(sqlite_engine: sqlalchemy.Engine) -> None:
    inserter = BatchInserter(sqlite_engine)
    bad = fix_row(Fix("T001", T0, 1, 2))[:-1]  # one column short
    with pytest.raises(TrackingStoreError, match="inserting 1 positions failed"):
        inserter.insert([bad])  # type: ignore[list-item]
