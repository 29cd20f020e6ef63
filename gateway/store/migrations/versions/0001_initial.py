"""Initial schema: devices, presence_events, floor_events.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-28

Written out explicitly (not generated from the live metadata) so this revision never changes;
constraint names are final (op.f) so the metadata naming convention is not applied twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("unit", sa.String(32), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(256), nullable=False),
        sa.Column(
            "enabled",
            sa.Boolean(create_constraint=True, name=op.f("ck_devices_enabled_bool")),
            nullable=False,
        ),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.CheckConstraint(
            "role IN ('officer', 'guard', 'dispatcher')", name=op.f("ck_devices_role")
        ),
    )
    op.create_index(op.f("ix_devices_unit"), "devices", ["unit"])

    op.create_table(
        "presence_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=True),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_presence_events")),
    )
    op.create_index(op.f("ix_presence_events_device_ts"), "presence_events", ["device", "ts"])
    op.create_index(op.f("ix_presence_events_ts"), "presence_events", ["ts"])

    op.create_table(
        "floor_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("floor_key", sa.String(80), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("device", sa.String(32), nullable=True),
        sa.Column("burst", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(32), nullable=True),
        sa.Column("priority", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_floor_events")),
    )
    op.create_index(op.f("ix_floor_events_floor_key_ts"), "floor_events", ["floor_key", "ts"])
    op.create_index(op.f("ix_floor_events_device_ts"), "floor_events", ["device", "ts"])
    op.create_index(op.f("ix_floor_events_ts"), "floor_events", ["ts"])


def downgrade() -> None:
    op.drop_table("floor_events")
    op.drop_table("presence_events")
    op.drop_index(op.f("ix_devices_unit"), table_name="devices")
    op.drop_table("devices")
