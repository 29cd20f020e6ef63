"""Tracking: positions, track_events, geofences, checkpoints.

Revision ID: 0002_tracking
Revises: 0001_initial
Create Date: 2026-11-28

Written out explicitly (not generated from the live metadata) so this revision never changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_tracking"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "positions",
        sa.Column("device", sa.String(32), nullable=False),
        sa.Column("fix_time", sa.Float(), nullable=False),
        sa.Column("server_time", sa.Float(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("speed", sa.Float(), nullable=True),
        sa.Column("course", sa.Float(), nullable=True),
        sa.Column("altitude", sa.Float(), nullable=True),
        sa.Column("accuracy", sa.Float(), nullable=True),
        sa.Column("battery", sa.SmallInteger(), nullable=True),
        sa.Column("valid", sa.Boolean(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("device", "fix_time", name=op.f("pk_positions")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "track_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device", sa.String(32), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("geofence", sa.String(64), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_track_events")),
    )
    op.create_index(op.f("ix_track_events_device_ts"), "track_events", ["device", "ts"])
    op.create_index(op.f("ix_track_events_ts"), "track_events", ["ts"])
    op.create_table(
        "geofences",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("coordinates", sa.JSON(), nullable=False),
        sa.Column("radius_m", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_geofences")),
    )
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("grid", sa.String(32), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("radius_m", sa.Float(), nullable=False),
        sa.Column("required_visits", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkpoints")),
    )
    op.create_index(op.f("ix_checkpoints_grid"), "checkpoints", ["grid"])


def downgrade() -> None:
    op.drop_index(op.f("ix_checkpoints_grid"), table_name="checkpoints")
    op.drop_table("checkpoints")
    op.drop_table("geofences")
    op.drop_index(op.f("ix_track_events_ts"), table_name="track_events")
    op.drop_index(op.f("ix_track_events_device_ts"), table_name="track_events")
    op.drop_table("track_events")
    op.drop_table("positions")
