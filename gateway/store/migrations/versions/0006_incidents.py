"""Incidents: each incident as it stands, and every transition of it.

Revision ID: 0006_incidents
Revises: 0005_accounts
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_incidents"
down_revision: str | None = "0005_accounts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIMES = ("accepted_at", "assigned_at", "en_route_at", "on_scene_at", "resolved_at", "closed_at")


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("reporter", sa.String(64), nullable=False),
        sa.Column("grid", sa.String(32), nullable=True),
        sa.Column("area", sa.String(32), nullable=True),
        sa.Column("tier", sa.String(8), nullable=False),
        sa.Column("unit", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column(
            "is_open", sa.Boolean(create_constraint=True, name="is_open_bool"), nullable=False
        ),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("reported_at", sa.Float(), nullable=False),
        sa.Column("tier_since", sa.Float(), nullable=False),
        *(sa.Column(name, sa.Float(), nullable=True) for name in _TIMES),
        sa.Column("closed_tier", sa.String(8), nullable=True),
        sa.Column("officers", sa.Text(), nullable=False),
        sa.Column("reopens", sa.Integer(), nullable=False),
        sa.Column("escalations", sa.Integer(), nullable=False),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("reminded", sa.Text(), nullable=False),
        sa.Column("talkgroup", sa.String(32), nullable=True),
        sa.Column("dispatcher", sa.String(64), nullable=True),
        sa.Column("alarm", sa.Integer(), nullable=True),
        sa.Column("voice", sa.String(128), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_incidents"),
    )
    op.create_index("ix_incidents_is_open_unit", "incidents", ["is_open", "unit"])
    op.create_index("ix_incidents_reported_at", "incidents", ["reported_at"])
    op.create_index("ix_incidents_closed_at", "incidents", ["closed_at"])
    op.create_table(
        "incident_transitions",
        sa.Column("incident", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("from_tier", sa.String(8), nullable=True),
        sa.Column("to_tier", sa.String(8), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("incident", "seq", name="pk_incident_transitions"),
    )
    op.create_index("ix_incident_transitions_ts", "incident_transitions", ["ts"])


def downgrade() -> None:
    op.drop_table("incident_transitions")
    op.drop_table("incidents")
