"""The audit trail: who did what to what, when, and with what result. Append-only.

Written by one durable writer (gateway/durable.py, as the event log: retried, journalled past a
bound, never dropped). Besides what the API records (sign-ins, provisioning, account changes,
commands, floor revokes, monitor sessions), the gateway's own events add the terminals' side:
command acknowledgements and officers' status messages (:func:`from_gateway_events`).
"""

from __future__ import annotations

import csv
import getpass
import io
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec
import sqlalchemy
from sqlalchemy import select

from gateway.auth.schema import audit
from gateway.durable import DurableWrapper, DurableWriter
from gateway.events import GatewayEvent

log = logging.getLogger(__name__)

SYSTEM: Final = "system"
CSV_COLUMNS: Final = ("id", "ts", "actor", "action", "target", "result", "detail")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    ts: float
    actor: str
    action: str
    target: str | None
    result: str
    detail: dict[str, Any] | None = None


_decode = msgspec.json.Decoder(AuditEntry).decode


def encode_entry(entry: AuditEntry) -> bytes:
    return msgspec.json.encode(entry)


def decode_entry(line: bytes) -> AuditEntry:
    return _decode(line)


def from_gateway_events(events: Iterable[GatewayEvent]) -> list[AuditEntry]:
    """The audit rows of gateway events: commands sent (by the control plane), their
    acknowledgements, floor revokes and officers' status messages."""
    entries: list[AuditEntry] = []
    for event in events:
        ts = event.wall_ms / 1000
        data = event.data
        actor = event.device or SYSTEM
        if event.kind == "command_ack":
            result = "ack" if data.get("ok") else "nak"
            detail = {"cmd": data.get("cmd"), "detail": data.get("detail")}
            entries.append(
                AuditEntry(
                    ts, event.device or SYSTEM, "command_ack", data.get("re"), result, detail
                )
            )
        elif event.kind == "status_msg":
            detail = {"code": data.get("code"), "text": data.get("text")}
            entries.append(AuditEntry(ts, actor, "status_msg", None, "ok", detail))
        elif event.kind == "floor" and data.get("event") == "revoked":
            detail = {"device": event.device, "reason": data.get("reason")}
            entries.append(AuditEntry(ts, SYSTEM, "floor_revoked", data.get("floor"), "ok", detail))
    return entries


class AuditWriter(DurableWrapper[AuditEntry]):
    """Append audit rows off the event loop; `record` never blocks and never drops."""

    def __init__(
        self,
        engine: sqlalchemy.Engine,
        *,
        journal_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
        logger: logging.Logger | None = None,
        **durable: Any,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.log = logger or log
        self.core: DurableWriter[AuditEntry] = DurableWriter(
            self._write,
            name="audit-writer",
            label="audit writer",
            noun="audit rows",
            encode=encode_entry,
            decode=decode_entry,
            journal_dir=journal_dir,
            # Journal first, like the gateway's events: an audit row is on disk at once.
            memory_limit=0 if journal_dir else 20_000,
            max_batch=500,
            max_wait=0.05,
            logger=self.log,
            **durable,
        )

    def record(
        self,
        actor: str,
        action: str,
        target: str | None = None,
        result: str = "ok",
        detail: dict[str, Any] | None = None,
    ) -> None:
        self.core.submit([AuditEntry(self.clock(), actor, action, target, result, detail)])

    def observe_gateway_events(self, events: list[GatewayEvent]) -> None:
        """An event sink of the gateway runner."""
        entries = from_gateway_events(events)
        if entries:
            self.core.submit(entries)

    def _write(self, batch: list[AuditEntry]) -> None:
        insert_entries(self.engine, batch)


def insert_entries(engine: sqlalchemy.Engine, entries: Sequence[AuditEntry]) -> None:
    """Store audit rows in one transaction, or raise (the writer retries; the CLI fails)."""
    rows = [
        {
            "ts": e.ts,
            "actor": e.actor[:64],
            "action": e.action[:48],
            "target": None if e.target is None else str(e.target)[:128],
            "result": e.result[:16],
            "detail": None if e.detail is None else json.dumps(e.detail, ensure_ascii=False),
        }
        for e in entries
    ]
    with engine.begin() as conn:
        conn.execute(audit.insert(), rows)


def record_cli(
    engine: sqlalchemy.Engine,
    action: str,
    targets: Iterable[str],
    detail: dict[str, Any] | None = None,
) -> None:
    """Audit rows for a change made with the `xixin` command on this machine: the actor is
    `cli:<the operating-system user>`, as the API's is the signed-in account."""
    actor = f"cli:{getpass.getuser()}"
    now = time.time()
    insert_entries(engine, [AuditEntry(now, actor, action, t, "ok", detail) for t in targets])


@dataclass(frozen=True, slots=True)
class AuditQuery:
    actor: str | None = None
    action: str | None = None
    target: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 1000


def find_audit(engine: sqlalchemy.Engine, where: AuditQuery) -> list[dict[str, Any]]:
    """Audit rows matching `where`, newest first."""
    query = select(audit).order_by(audit.c.ts.desc(), audit.c.id.desc()).limit(where.limit)
    for column, value in (
        (audit.c.actor, where.actor),
        (audit.c.action, where.action),
        (audit.c.target, where.target),
    ):
        if value is not None:
            query = query.where(column == value)
    if where.since is not None:
        query = query.where(audit.c.ts >= where.since)
    if where.until is not None:
        query = query.where(audit.c.ts < where.until)
    with engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(query)]
    for row in rows:
        row["detail"] = json.loads(row["detail"]) if row["detail"] else None
    return rows


def audit_csv(rows: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        detail = row.get("detail")
        writer.writerow(
            [
                row["id"], f"{row['ts']:.3f}", row["actor"], row["action"], row["target"] or "",
                row["result"], json.dumps(detail, ensure_ascii=False) if detail else "",
            ]
        )  # fmt: skip
    return out.getvalue()
