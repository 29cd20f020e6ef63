"""Incidents in the database: a durable writer (gateway/durable.py, journal first: a step is on
disk within milliseconds, then in the database; retried, never dropped) and the queries.

A write is one step of one incident: its snapshot after the step and the step's transitions.
Snapshots are upserted when newer (`seq`), transitions inserted unless already stored, so a
journal segment written twice (a crash between commit and unlink) changes nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final

import msgspec
import sqlalchemy
from sqlalchemy import and_, bindparam, func, or_, select, tuple_

from gateway.durable import DurableWrapper, DurableWriter
from gateway.incidents.model import Incident, Step, Transition
from gateway.incidents.schema import incident_transitions, incidents

log = logging.getLogger(__name__)

_CHUNK: Final = 400
_JSON_COLUMNS: Final = frozenset({"officers", "reminded"})
_FIELDS: Final = tuple(f.name for f in fields(Incident))


@dataclass(frozen=True, slots=True)
class Write:
    incident: Incident
    transitions: tuple[Transition, ...]


_decode = msgspec.json.Decoder(Write).decode


def encode_write(item: Write) -> bytes:
    return msgspec.json.encode(item)


def decode_write(line: bytes) -> Write:
    return _decode(line)


def incident_row(incident: Incident) -> dict[str, Any]:
    row = {name: getattr(incident, name) for name in _FIELDS}
    row["officers"] = json.dumps(list(incident.officers))
    row["reminded"] = json.dumps(sorted(incident.reminded))
    row["is_open"] = incident.open
    return row


def incident_from_row(row: Any) -> Incident:
    values = {name: row._mapping[name] for name in _FIELDS}
    values["officers"] = tuple(json.loads(values["officers"]))
    values["reminded"] = frozenset(json.loads(values["reminded"]))
    return Incident(**values)


def transition_row(t: Transition) -> dict[str, Any]:
    return {
        "incident": t.incident, "seq": t.seq, "ts": t.ts, "actor": t.actor[:64],
        "action": t.action, "from_state": t.from_state, "to_state": t.to_state,
        "from_tier": t.from_tier, "to_tier": t.to_tier, "note": t.note,
        "detail": None if t.detail is None else json.dumps(t.detail, ensure_ascii=False),
    }  # fmt: skip


def transition_from_row(row: Any) -> Transition:
    m = row._mapping
    return Transition(
        m["incident"], m["seq"], m["ts"], m["actor"], m["action"], m["from_state"],
        m["to_state"], m["from_tier"], m["to_tier"], m["note"],
        json.loads(m["detail"]) if m["detail"] else None,
    )  # fmt: skip


def write_steps(engine: sqlalchemy.Engine, batch: Sequence[Write]) -> None:
    """Store a batch in one transaction, idempotently, or raise (the writer retries it)."""
    latest: dict[int, Incident] = {}
    steps: dict[tuple[int, int], Transition] = {}
    for item in batch:
        known = latest.get(item.incident.id)
        if known is None or known.seq < item.incident.seq:
            latest[item.incident.id] = item.incident
        for t in item.transitions:
            steps[(t.incident, t.seq)] = t
    ids = sorted(latest)
    with engine.begin() as conn:
        stored: dict[int, int] = {}
        have: set[tuple[int, int]] = set()
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            query = select(incidents.c.id, incidents.c.seq).where(incidents.c.id.in_(chunk))
            stored.update((r.id, r.seq) for r in conn.execute(query))
            keys = [k for k in steps if k[0] in set(chunk)]
            if keys:
                pairs = tuple_(incident_transitions.c.incident, incident_transitions.c.seq)
                found = select(incident_transitions.c.incident, incident_transitions.c.seq).where(
                    pairs.in_(keys)
                )
                have.update((r.incident, r.seq) for r in conn.execute(found))
        new = [incident_row(i) for i in latest.values() if i.id not in stored]
        newer = [
            {f"v_{k}": v for k, v in incident_row(i).items()}
            for i in latest.values()
            if i.id in stored and stored[i.id] < i.seq
        ]
        if new:
            conn.execute(incidents.insert(), new)
        if newer:
            values: dict[str, Any] = {
                name[2:]: bindparam(name) for name in newer[0] if name != "v_id"
            }
            update = incidents.update().where(incidents.c.id == bindparam("v_id")).values(values)
            conn.execute(update, newer)
        rows = [transition_row(t) for key, t in steps.items() if key not in have]
        if rows:
            conn.execute(incident_transitions.insert(), rows)


class IncidentWriter(DurableWrapper[Write]):
    """Incident steps into the database off the event loop; journal first, never dropped."""

    def __init__(
        self,
        engine: sqlalchemy.Engine,
        *,
        journal_dir: Path | None = None,
        logger: logging.Logger | None = None,
        **durable: Any,
    ) -> None:
        self.engine = engine
        self.log = logger or log
        self.core: DurableWriter[Write] = DurableWriter(
            lambda batch: write_steps(engine, batch),
            name="incident-writer",
            label="incident writer",
            noun="incident steps",
            encode=encode_write,
            decode=decode_write,
            journal_dir=journal_dir,
            memory_limit=0 if journal_dir else 100_000,
            max_batch=500,
            max_wait=0.05,
            logger=self.log,
            **durable,
        )

    def submit(self, step: Step, on_durable: Callable[[], None] | None = None) -> None:
        self.core.submit([Write(step.incident, step.transitions)], on_durable)


# ---- queries -------------------------------------------------------------------------------


def max_id(engine: sqlalchemy.Engine) -> int:
    with engine.connect() as conn:
        found = conn.execute(select(func.max(incidents.c.id))).scalar()
    return int(found or 0)


def load_current(engine: sqlalchemy.Engine, closed_since: float) -> list[Incident]:
    """Open incidents and those closed since `closed_since` (what the board shows)."""
    query = select(incidents).where(
        or_(incidents.c.is_open.is_(True), incidents.c.closed_at >= closed_since)
    )
    with engine.connect() as conn:
        return [incident_from_row(r) for r in conn.execute(query)]


def get_incident(engine: sqlalchemy.Engine, incident_id: int) -> Incident | None:
    with engine.connect() as conn:
        row = conn.execute(select(incidents).where(incidents.c.id == incident_id)).first()
    return None if row is None else incident_from_row(row)


def get_transitions(engine: sqlalchemy.Engine, incident_id: int) -> list[Transition]:
    query = (
        select(incident_transitions)
        .where(incident_transitions.c.incident == incident_id)
        .order_by(incident_transitions.c.seq)
    )
    with engine.connect() as conn:
        return [transition_from_row(r) for r in conn.execute(query)]


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    since: float | None = None  # reported at or after
    until: float | None = None  # reported before
    units: frozenset[str] | None = None  # None: everywhere; else grid or unit in these
    category: str | None = None
    state: str | None = None
    limit: int = 1000


def find_incidents(engine: sqlalchemy.Engine, where: HistoryQuery) -> list[Incident]:
    """Stored incidents matching `where`, newest first."""
    query = select(incidents).order_by(incidents.c.reported_at.desc()).limit(where.limit)
    conditions: list[Any] = []
    if where.since is not None:
        conditions.append(incidents.c.reported_at >= where.since)
    if where.until is not None:
        conditions.append(incidents.c.reported_at < where.until)
    if where.units is not None:
        units = sorted(where.units)
        conditions.append(or_(incidents.c.unit.in_(units), incidents.c.grid.in_(units)))
    if where.category is not None:
        conditions.append(incidents.c.category == where.category)
    if where.state is not None:
        conditions.append(incidents.c.state == where.state)
    if conditions:
        query = query.where(and_(*conditions))
    with engine.connect() as conn:
        return [incident_from_row(r) for r in conn.execute(query)]


def iter_reported(
    engine: sqlalchemy.Engine, since: float, until: float, batch: int = 5000
) -> Iterable[Incident]:
    """Every incident reported in [since, until), oldest first (for reports)."""
    query = (
        select(incidents)
        .where(incidents.c.reported_at >= since, incidents.c.reported_at < until)
        .order_by(incidents.c.reported_at)
        .execution_options(yield_per=batch)
    )
    with engine.connect() as conn:
        for row in conn.execute(query):
            yield incident_from_row(row)
