"""Recordings: one row per recorded talk burst.

Revision ID: 0003_recordings
Revises: 0002_tracking
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_recordings"
down_revision: str | None = "0002_tracking"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "recordings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("floor_key", sa.String(80), nullable=False),
        sa.Column("talker", sa.String(32), nullable=False),
        sa.Column("burst", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("lost_frames", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_recordings"),
    )
    op.create_index("ix_recordings_floor_key_started_at", "recordings", ["floor_key", "started_at"])
    op.create_index("ix_recordings_talker_started_at", "recordings", ["talker", "started_at"])
    op.create_index("ix_recordings_started_at", "recordings", ["started_at"])


def downgrade() -> None:
    op.drop_table("recordings")
