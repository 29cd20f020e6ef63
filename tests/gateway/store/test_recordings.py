"""The recordings queries the API runs (gateway.store.recordings)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

from gateway.store.db import create_db_engine, default_db_url, migrate
from gateway.store.recordings import (
    RecordingFilter,
    find_recordings,
    recording_path,
    recordings,
)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sqlalchemy.Engine]:
    engine = create_db_engine(default_db_url(tmp_path))
    migrate(engine)
    rows = [
        ("grid-01", "T001", 10.0),
        ("grid-01", "T002", 20.0),
        ("call:T001:T004", "T001", 30.0),
    ]
    with engine.begin() as conn:
        for n, (floor, talker, started) in enumerate(rows, 1):
            conn.execute(
                recordings.insert().values(
                    floor_key=floor,
                    talker=talker,
                    burst=n,
                    started_at=started,
                    ended_at=started + 1,
                    duration_ms=1000,
                    frames=50,
                    lost_frames=0,
                    path=f"r{n}.ogg",
                )
            )
    yield engine
    engine.dispose()


def test_find_filters_and_orders_newest_first(engine: sqlalchemy.Engine) -> None:
    with engine.connect() as conn:

        def paths(where: RecordingFilter, limit: int = 100) -> list[str]:
            return [row["path"] for row in find_recordings(conn, where, limit)]

        assert paths(RecordingFilter()) == ["r3.ogg", "r2.ogg", "r1.ogg"]
        assert paths(RecordingFilter(), limit=1) == ["r3.ogg"]
        assert paths(RecordingFilter(floor="grid-01")) == ["r2.ogg", "r1.ogg"]
        assert paths(RecordingFilter(talker="T001")) == ["r3.ogg", "r1.ogg"]
        assert paths(RecordingFilter(since=20.0, until=30.0)) == ["r2.ogg"]


def test_path_of_a_recording(engine: sqlalchemy.Engine) -> None:
    with engine.connect() as conn:
        assert recording_path(conn, 2) == "r2.ogg"
        assert recording_path(conn, 99) is None
