"""The incidents' tables on the store's shared `metadata` (migration 0006_incidents).

`incidents` holds each incident as it stands now (one row, rewritten on every step, with its
step number `seq`); `incident_transitions` every step for ever, keyed by (incident, seq), so a
step written twice (a journal segment replayed after a crash) is stored once.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Float, Index, Integer, String, Table, Text

from gateway.store.schema import metadata

incidents = Table(
    "incidents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("category", String(32), nullable=False),
    Column("text", Text, nullable=False),
    Column("source", String(16), nullable=False),
    Column("reporter", String(64), nullable=False),
    Column("grid", String(32), nullable=True),
    Column("area", String(32), nullable=True),
    Column("tier", String(8), nullable=False),
    Column("unit", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    Column("is_open", Boolean(create_constraint=True, name="is_open_bool"), nullable=False),
    Column("lat", Float, nullable=True),
    Column("lon", Float, nullable=True),
    Column("reported_at", Float, nullable=False),
    Column("tier_since", Float, nullable=False),
    Column("accepted_at", Float, nullable=True),
    Column("assigned_at", Float, nullable=True),
    Column("en_route_at", Float, nullable=True),
    Column("on_scene_at", Float, nullable=True),
    Column("resolved_at", Float, nullable=True),
    Column("closed_at", Float, nullable=True),
    Column("closed_tier", String(8), nullable=True),
    Column("officers", Text, nullable=False),  # JSON list of device ids
    Column("reopens", Integer, nullable=False),
    Column("escalations", Integer, nullable=False),
    Column("resolution", Text, nullable=True),
    Column("reminded", Text, nullable=False),  # JSON list of deadline keys
    Column("talkgroup", String(32), nullable=True),
    Column("dispatcher", String(64), nullable=True),
    Column("alarm", Integer, nullable=True),
    Column("voice", String(128), nullable=True),
    Column("seq", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index(None, "is_open", "unit"),
    Index(None, "reported_at"),
    Index(None, "closed_at"),
)

incident_transitions = Table(
    "incident_transitions",
    metadata,
    Column("incident", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("ts", Float, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("from_state", String(16), nullable=True),
    Column("to_state", String(16), nullable=False),
    Column("from_tier", String(8), nullable=True),
    Column("to_tier", String(8), nullable=False),
    Column("note", Text, nullable=True),
    Column("detail", Text, nullable=True),  # JSON
    Index(None, "ts"),
)
