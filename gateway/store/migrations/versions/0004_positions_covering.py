"""Positions on PostgreSQL: a covering primary key for replay, frequent insert vacuums.

Revision ID: 0004_positions_covering
Revises: 0003_recordings
Create Date: 2026-11-28

A replay reads one device's day (17,280 rows) in (device, fix_time) order. In a PostgreSQL heap
those rows are spread over as many pages as devices report at once (rows land in arrival
order), so the replay's cost was the heap, not the index. The primary key now INCLUDEs what a
replay draws (lat, lon, speed, course): the replay is an index-only scan over a few hundred
contiguous B-tree leaves whatever the heap order. Index-only scans need the visibility map,
which autovacuum sets; for an insert-only table it runs by default only after 20 % new rows,
so positions asks for it every 100,000 inserts instead. SQLite is unchanged: its positions
table is WITHOUT ROWID, i.e. already stored in primary-key order with every column.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004_positions_covering"
down_revision: str | None = "0003_recordings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "ALTER TABLE positions DROP CONSTRAINT pk_positions, "
        "ADD CONSTRAINT pk_positions PRIMARY KEY (device, fix_time) "
        "INCLUDE (lat, lon, speed, course)"
    )
    op.execute(
        "ALTER TABLE positions SET (autovacuum_vacuum_insert_threshold = 100000, "
        "autovacuum_vacuum_insert_scale_factor = 0)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "ALTER TABLE positions RESET (autovacuum_vacuum_insert_threshold, "
        "autovacuum_vacuum_insert_scale_factor)"
    )
    op.execute(
        "ALTER TABLE positions DROP CONSTRAINT pk_positions, "
        "ADD CONSTRAINT pk_positions PRIMARY KEY (device, fix_time)"
    )
