"""The alarm queue, the command outbox and the device record's stun flag.

Revision ID: 0007_alarms_commands
Revises: 0006_incidents
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_alarms_commands"
down_revision: str | None = "0006_incidents"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(
            sa.Column(
                "stunned",
                sa.Boolean(create_constraint=True, name="stunned_bool"),
                nullable=False,
                server_default=sa.false(),
            )
        )
    op.create_table(
        "commands",
        sa.Column("id", sa.String(24), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("device", sa.String(32), nullable=False),
        sa.Column("command", sa.String(16), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commands")),
    )
    op.create_index(op.f("ix_commands_device_seq"), "commands", ["device", "seq"])
    op.create_index(op.f("ix_commands_state"), "commands", ["state"])
    op.create_table(
        "alarms",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("device", sa.String(32), nullable=False),
        sa.Column("unit", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("raised_at", sa.Float(), nullable=False),
        sa.Column("active", sa.Boolean(create_constraint=True, name="active_bool"), nullable=False),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("position_at", sa.Float(), nullable=True),
        sa.Column("acknowledged_by", sa.String(24), nullable=True),
        sa.Column("acknowledged_at", sa.Float(), nullable=True),
        sa.Column("closed_by", sa.String(24), nullable=True),
        sa.Column("closed_at", sa.Float(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("note", sa.String(2000), nullable=True),
        sa.Column("escalated_to", sa.String(32), nullable=True),
        sa.Column("escalations", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alarms")),
    )
    op.create_index(op.f("ix_alarms_state"), "alarms", ["state"])
    op.create_index(op.f("ix_alarms_device_raised_at"), "alarms", ["device", "raised_at"])
    op.create_index(op.f("ix_alarms_raised_at"), "alarms", ["raised_at"])


def downgrade() -> None:
    op.drop_table("alarms")
    op.drop_table("commands")
    with op.batch_alter_table("devices") as batch:
        if op.get_bind().dialect.name == "sqlite":  # PostgreSQL's native boolean has no CHECK
            # first: SQLite's copy of the table would keep it, naming a column it lacks
            batch.drop_constraint(op.f("ck_devices_stunned_bool"), type_="check")
        batch.drop_column("stunned")
