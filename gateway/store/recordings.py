"""The `recordings` table (one row per recorded talk burst; the file lives in the data dir) and
the queries run on it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Column, Connection, Float, Index, Integer, RowMapping, String, Table, select

from gateway.store.schema import DEVICE_ID_LEN, metadata

recordings = Table(
    "recordings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # a talkgroup id, or "call:<device>:<device>" for a private call
    Column("floor_key", String(80), nullable=False),
    Column("talker", String(DEVICE_ID_LEN), nullable=False),
    Column("burst", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float, nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("frames", Integer, nullable=False),
    Column("lost_frames", Integer, nullable=False),
    # relative to the recordings directory
    Column("path", String(512), nullable=False),
    Index(None, "floor_key", "started_at"),
    Index(None, "talker", "started_at"),
    Index(None, "started_at"),
)


@dataclass(frozen=True, slots=True)
class RecordingFilter:
    """Which recordings to find; None leaves a criterion out. Times are epoch seconds, `until`
    exclusive."""

    floor: str | None = None
    talker: str | None = None
    since: float | None = None
    until: float | None = None


def find_recordings(conn: Connection, where: RecordingFilter, limit: int) -> list[RowMapping]:
    """Recordings matching `where`, newest (by start) first, at most `limit`."""
    query = select(recordings).order_by(recordings.c.started_at.desc()).limit(limit)
    if where.floor is not None:
        query = query.where(recordings.c.floor_key == where.floor)
    if where.talker is not None:
        query = query.where(recordings.c.talker == where.talker)
    if where.since is not None:
        query = query.where(recordings.c.started_at >= where.since)
    if where.until is not None:
        query = query.where(recordings.c.started_at < where.until)
    return [row._mapping for row in conn.execute(query)]


def recording_path(conn: Connection, recording_id: int) -> str | None:
    """A recording's file, relative to the recordings directory (None: no such recording)."""
    return conn.execute(
        select(recordings.c.path).where(recordings.c.id == recording_id)
    ).scalar_one_or_none()


def find_recording(conn: Connection, recording_id: int) -> tuple[str, str, str] | None:
    """A recording's floor key, talker and file (relative); None: no such recording."""
    row = conn.execute(
        select(recordings.c.floor_key, recordings.c.talker, recordings.c.path).where(
            recordings.c.id == recording_id
        )
    ).first()
    return None if row is None else (row.floor_key, row.talker, row.path)
