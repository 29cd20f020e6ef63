"""The accounts' tables on the store's shared `metadata` (migration 0005_accounts).

`users` are people (dispatchers, administrators, viewers), not devices; `auth_tokens` are their
sign-in sessions and bearer tokens, kept only as SHA-256 digests (the tokens are 256-bit random
values, so a fast hash suffices); `audit` is the append-only trail of who did what.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from gateway.store.schema import metadata

USER_NAME_LEN = 24
ROLE_LEN = 48

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(USER_NAME_LEN), nullable=False, unique=True),
    # admin, centre, area:<area>, grid:<grid> or viewer (gateway.auth.roles)
    Column("role", String(ROLE_LEN), nullable=False),
    Column("password_hash", String(256), nullable=False),  # argon2id, PHC string
    Column("enabled", Boolean(create_constraint=True, name="enabled_bool"), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

auth_tokens = Table(
    "auth_tokens",
    metadata,
    Column("digest", String(64), primary_key=True),  # hex SHA-256 of the token
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),  # session / bearer
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Index(None, "user_id"),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    # an account name, a device id (officers' status messages, acks) or "system"
    Column("actor", String(64), nullable=False),
    Column("action", String(48), nullable=False),
    Column("target", String(128), nullable=True),
    Column("result", String(16), nullable=False),  # ok / denied / failed / ack / nak
    Column("detail", Text, nullable=True),  # JSON
    Index(None, "ts"),
    Index(None, "actor", "ts"),
)
