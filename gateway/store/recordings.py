"""The `recordings` table: one row per recorded talk burst (the file lives in the data dir)."""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, String, Table

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
