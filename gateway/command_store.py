"""The `commands` table (the persistent outbox of gateway/control/commands.py) and its writer:
the control plane's `command` events become rows, its `stun` events the device record's flag.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Final

import sqlalchemy
from sqlalchemy import JSON, Column, Float, Index, Integer, String, Table, func, select

from gateway.control.commands import OPEN_STATES, CommandRecord
from gateway.events import GatewayEvent
from gateway.store.records import RowWriter
from gateway.store.schema import DEVICE_ID_LEN, devices, metadata

COMMAND_ID_LEN: Final = 24
commands = Table(
    "commands",
    metadata,
    Column("id", String(COMMAND_ID_LEN), primary_key=True),  # c<seq>
    Column("seq", Integer, nullable=False),
    Column("device", String(DEVICE_ID_LEN), nullable=False),
    Column("command", String(16), nullable=False),
    Column("args", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("result", JSON, nullable=True),
    Index(None, "device", "seq"),
    Index(None, "state"),
)


def command_row(data: dict[str, Any]) -> dict[str, Any]:
    """A `command` event's record as a row."""
    row = dict(data)
    row["seq"] = int(str(data["id"]).lstrip("c"))
    return row


def record_of(row: Any) -> CommandRecord:
    m = row._mapping
    return CommandRecord(
        m["id"], m["seq"], m["device"], m["command"], dict(m["args"] or {}), m["state"],
        m["created_at"], m["created_by"], m["updated_at"], m["result"],
    )  # fmt: skip


class CommandWriter(RowWriter):
    """Stores the control plane's `command` and `stun` events (an event sink)."""

    def __init__(
        self,
        engine: sqlalchemy.Engine,
        *,
        journal_dir: Path | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        super().__init__(
            engine,
            [commands, devices],
            name="command writer",
            journal_dir=journal_dir,
            update_only=frozenset({"devices"}),
            logger=logger,
        )

    def observe_gateway_events(self, events: list[GatewayEvent]) -> None:
        rows = []
        for event in events:
            if event.kind == "command":
                rows.append(("commands", command_row(event.data["command"])))
            elif event.kind == "stun" and event.device is not None:
                rows.append(("devices", {"id": event.device, "stunned": event.data["stunned"]}))
        self.submit(rows)


def load_outbox(engine: sqlalchemy.Engine) -> tuple[list[CommandRecord], list[str], int]:
    """What the outbox needs at start: unfinished commands, stunned devices, the last seq."""
    with engine.connect() as conn:
        open_rows = conn.execute(
            select(commands).where(commands.c.state.in_(OPEN_STATES)).order_by(commands.c.seq)
        ).all()
        stunned = conn.execute(select(devices.c.id).where(devices.c.stunned)).scalars().all()
        last = conn.execute(select(func.max(commands.c.seq))).scalar()
    return [record_of(r) for r in open_rows], list(stunned), int(last or 0)


def device_commands(
    engine: sqlalchemy.Engine, device: str, limit: int = 200
) -> list[CommandRecord]:
    """A device's commands, newest first."""
    query = (
        select(commands)
        .where(commands.c.device == device)
        .order_by(commands.c.seq.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [record_of(r) for r in conn.execute(query)]
