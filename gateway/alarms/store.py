"""The `alarms` table: every alarm of the queue (gateway/alarms/queue.py), open and closed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy
from sqlalchemy import Boolean, Column, Float, Index, Integer, String, Table, func, select

from gateway.alarms.queue import Alarm, Position
from gateway.auth.schema import USER_NAME_LEN as ACCOUNT_NAME_LEN
from gateway.store.schema import DEVICE_ID_LEN, UNIT_ID_LEN, metadata

MAX_NOTE_LEN: Final = 2000

alarms = Table(
    "alarms",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("kind", String(24), nullable=False),
    Column("device", String(DEVICE_ID_LEN), nullable=False),
    Column("unit", String(UNIT_ID_LEN), nullable=False),
    Column("state", String(16), nullable=False),
    Column("raised_at", Float, nullable=False),
    Column("active", Boolean(create_constraint=True, name="active_bool"), nullable=False),
    Column("lat", Float, nullable=True),
    Column("lon", Float, nullable=True),
    Column("position_at", Float, nullable=True),
    Column("acknowledged_by", String(ACCOUNT_NAME_LEN), nullable=True),
    Column("acknowledged_at", Float, nullable=True),
    Column("closed_by", String(ACCOUNT_NAME_LEN), nullable=True),
    Column("closed_at", Float, nullable=True),
    Column("outcome", String(16), nullable=True),
    Column("note", String(MAX_NOTE_LEN), nullable=True),
    Column("escalated_to", String(UNIT_ID_LEN), nullable=True),
    Column("escalations", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index(None, "state"),
    Index(None, "device", "raised_at"),
    Index(None, "raised_at"),
)


def alarm_row(alarm: Alarm) -> dict[str, Any]:
    row = alarm.as_dict()
    position = row.pop("position")
    row["lat"] = position["lat"] if position else None
    row["lon"] = position["lon"] if position else None
    row["position_at"] = position["at"] if position else None
    return row


def alarm_of(row: Any) -> Alarm:
    m = dict(row._mapping)
    lat, lon, at = m.pop("lat"), m.pop("lon"), m.pop("position_at")
    position = None if lat is None or lon is None else Position(lat, lon, at or m["raised_at"])
    return Alarm(**m, position=position)


def load_open(engine: sqlalchemy.Engine) -> tuple[list[Alarm], int]:
    """The open alarms and the highest id ever given."""
    with engine.connect() as conn:
        rows = conn.execute(select(alarms).where(alarms.c.state != "closed")).all()
        last = conn.execute(select(func.max(alarms.c.id))).scalar()
    return [alarm_of(r) for r in rows], int(last or 0)


@dataclass(frozen=True, slots=True)
class AlarmFilter:
    open_only: bool = True
    kind: str | None = None
    device: str | None = None
    units: frozenset[str] | None = None  # None: every unit
    limit: int = 500


def find_alarms(engine: sqlalchemy.Engine, where: AlarmFilter) -> list[Alarm]:
    """Stored alarms, newest first."""
    query = select(alarms).order_by(alarms.c.raised_at.desc(), alarms.c.id.desc())
    if where.open_only:
        query = query.where(alarms.c.state != "closed")
    if where.kind is not None:
        query = query.where(alarms.c.kind == where.kind)
    if where.device is not None:
        query = query.where(alarms.c.device == where.device)
    if where.units is not None:
        query = query.where(alarms.c.unit.in_(sorted(where.units)))
    with engine.connect() as conn:
        return [alarm_of(r) for r in conn.execute(query.limit(where.limit))]
