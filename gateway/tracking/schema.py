"""Tracking tables on the gateway's shared `metadata` (migration 0002_tracking).

positions is the big one: its primary key (device, fix_time) is the replay index and makes a
re-sent beacon a no-op (INSERT OR IGNORE / ON CONFLICT DO NOTHING). On SQLite it is a WITHOUT
ROWID table, so one device's day is one contiguous range of the B-tree; on PostgreSQL the key
INCLUDEs lat, lon, speed and course, so a replay is an index-only scan of one contiguous range.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
)

from gateway.store.schema import DEVICE_ID_LEN, NAME_LEN, metadata

FENCE_ID_LEN = 64

positions = Table(
    "positions",
    metadata,
    Column("device", String(DEVICE_ID_LEN), nullable=False),
    Column("fix_time", Float, nullable=False),  # epoch s, from the terminal's receiver
    Column("server_time", Float, nullable=False),  # epoch s, when the gateway received it
    Column("lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
    Column("speed", Float, nullable=True),  # m/s
    Column("course", Float, nullable=True),  # degrees
    Column("altitude", Float, nullable=True),  # m
    Column("accuracy", Float, nullable=True),  # m
    Column("battery", SmallInteger, nullable=True),  # percent
    Column("valid", Boolean, nullable=False),
    Column("attributes", JSON, nullable=True),  # source, satellites, hdop, OwnTracks extras
    # PostgreSQL: the replay's columns ride in the key's B-tree (index-only replay, 0004).
    PrimaryKeyConstraint(
        "device", "fix_time", postgresql_include=["lat", "lon", "speed", "course"]
    ),
    sqlite_with_rowid=False,
)

track_events = Table(
    "track_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device", String(DEVICE_ID_LEN), nullable=False),
    Column("ts", Float, nullable=False),
    Column("kind", String(16), nullable=False),  # alarm / geofence
    Column("type", String(32), nullable=False),  # sos, low_battery, ... / enter, exit
    Column("active", Boolean, nullable=False),
    Column("geofence", String(FENCE_ID_LEN), nullable=True),
    Column("lat", Float, nullable=True),
    Column("lon", Float, nullable=True),
    Column("data", JSON, nullable=True),
    Index(None, "device", "ts"),
    Index(None, "ts"),
)

geofences = Table(
    "geofences",
    metadata,
    Column("id", String(FENCE_ID_LEN), primary_key=True),
    Column("name", String(NAME_LEN), nullable=False),
    Column("kind", String(16), nullable=False),  # polygon / circle / corridor
    Column("coordinates", JSON, nullable=False),  # [[lon, lat], ...]
    Column("radius_m", Float, nullable=True),  # circle radius, corridor half-width
    Column("created_at", Float, nullable=False),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("id", String(FENCE_ID_LEN), primary_key=True),
    Column("grid", String(DEVICE_ID_LEN), nullable=False),
    Column("name", String(NAME_LEN), nullable=False),
    Column("lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
    Column("radius_m", Float, nullable=False),
    Column("required_visits", Integer, nullable=False),  # per shift
    Column("created_at", Float, nullable=False),
    Index(None, "grid"),
)
