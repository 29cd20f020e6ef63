"""The gateway's tables (SQLAlchemy Core), one shared `metadata`.

Times are Unix epoch seconds (UTC) as floats everywhere, the same clock the sans-I/O cores get
injected as ``now: float``; the wire protocol's millisecond ``ts`` is converted at the edge.

Other parts of the gateway add their tables to this same `metadata` (for example positions and
alarms, migration "0002_tracking" with down_revision "0001_initial"; `gateway.tables` imports
them all, the store imports none of them); every schema change comes
with an Alembic revision in ``gateway/store/migrations/versions``.

Event tables keep the device id as text without a foreign key: they are history and must stay
readable even if a device row is ever purged.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    false,
)

# Stable constraint names so Alembic migrations (and SQLite batch mode) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

DEVICE_ID_LEN = 32
UNIT_ID_LEN = 32
NAME_LEN = 64

devices = Table(
    "devices",
    metadata,
    Column("id", String(DEVICE_ID_LEN), primary_key=True),
    Column("name", String(NAME_LEN), nullable=False),
    Column("unit", String(UNIT_ID_LEN), nullable=False),
    Column("role", String(16), nullable=False),
    Column("secret_hash", String(256), nullable=False),
    Column("enabled", Boolean(create_constraint=True, name="enabled_bool"), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # stunned by a dispatcher (protocol §5.4): kept across restarts, applied on reconnect
    Column(
        "stunned",
        Boolean(create_constraint=True, name="stunned_bool"),
        nullable=False,
        server_default=false(),
    ),
    CheckConstraint("role IN ('officer', 'guard', 'dispatcher')", name="role"),
    Index(None, "unit"),
)

presence_events = Table(
    "presence_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device", String(DEVICE_ID_LEN), nullable=False),
    Column("state", String(16), nullable=False),  # online / offline
    Column("reason", String(32), nullable=True),  # lost / shutdown / ...
    Column("ts", Float, nullable=False),
    Index(None, "device", "ts"),
    Index(None, "ts"),
)

floor_events = Table(
    "floor_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    # "tg:<talkgroup>" or "call:<device>:<device>": what the floor is for.
    Column("floor_key", String(80), nullable=False),
    Column(
        "event", String(32), nullable=False
    ),  # granted / queued / denied / revoked / released / idle
    Column("device", String(DEVICE_ID_LEN), nullable=True),
    Column("burst", Integer, nullable=True),
    Column("reason", String(32), nullable=True),
    Column("priority", String(16), nullable=True),
    Index(None, "floor_key", "ts"),
    Index(None, "device", "ts"),
    Index(None, "ts"),
)
