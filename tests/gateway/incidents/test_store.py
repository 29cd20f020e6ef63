"""Incidents stored durably: every step in the database after a restart, a replayed journal
changes nothing, a journal left by a killed run is written before anything is loaded."""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy
from sqlalchemy import func, select

from gateway.incidents import store as db
from gateway.incidents.model import Place
from gateway.incidents.schema import incident_transitions, incidents
from gateway.journal import Journal
from tests.gateway.incidents.conftest import Clock, make_service, settle


def _count(engine: sqlalchemy.Engine, table: sqlalchemy.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)


def test_every_step_survives_a_restart(
    engine: sqlalchemy.Engine, tmp_path: Path, clock: Clock
) -> None:
    service = make_service(engine, tmp_path / "j", clock)
    service.set_officers([("T001", "grid-01", "officer", True)])
    a = service.report("police", "fight", source="api", reporter="g1", place=Place("grid-01"))
    clock.now += 30
    service.step(a.id, "assign", "g1", officers=["T001"])
    clock.now += 30
    service.officer_answer(a.id, "T001", "on_scene")
    service.officer_answer(a.id, "T001", "resolved", "talked them down")
    clock.now += 60
    service.step(a.id, "close", "g1", note="settled")
    b = service.report("mediation", "noise", source="api", reporter="g1", place=Place("grid-02"))
    settle(service)
    again = make_service(engine, tmp_path / "j", clock)
    assert again.get(a.id) == service.get(a.id)
    assert again.get(b.id).state == "reported"
    actions = [t.action for t in again.timeline(a.id)]
    assert actions == [
        "reported", "accepted", "assigned", "officer_on_scene", "officer_resolved", "closed",
    ]  # fmt: skip
    c = again.report("police", "x", source="api", reporter="g1", place=Place("grid-01"))
    assert c.id == b.id + 1  # ids go on after a restart
    settle(again)


def test_a_journal_replayed_twice_stores_each_step_once(
    engine: sqlalchemy.Engine, tmp_path: Path, clock: Clock
) -> None:
    service = make_service(engine, tmp_path / "j", clock)
    inc = service.report("police", "x", source="api", reporter="g", place=Place("grid-01"))
    service.step(inc.id, "accept", "g")
    settle(service)
    steps = [
        db.Write(service.get(inc.id), tuple(service.timeline(inc.id))),
    ]
    db.write_steps(engine, steps)  # as if the segment were written again after a crash
    db.write_steps(engine, steps)
    assert _count(engine, incidents) == 1
    assert _count(engine, incident_transitions) == 2


def test_a_journal_left_by_a_killed_run_is_written_before_loading(
    engine: sqlalchemy.Engine, tmp_path: Path, clock: Clock
) -> None:
    # What a run killed right after its steps were journalled leaves: a segment, no rows.
    first = make_service(engine, tmp_path / "other", clock)
    inc = first.report("ecology", "dumping", source="api", reporter="g", place=Place("grid-03"))
    settle(first)
    item = db.Write(first.get(inc.id), tuple(first.timeline(inc.id)))
    with engine.begin() as conn:
        conn.execute(incident_transitions.delete())
        conn.execute(incidents.delete())
    journal = Journal(tmp_path / "j", db.encode_write, db.decode_write, 500, logging.getLogger())
    journal.append([item])
    journal.close()
    service = make_service(engine, tmp_path / "j", clock)
    assert service.get(inc.id).category == "ecology"
    assert [t.action for t in service.timeline(inc.id)] == ["reported"]
    settle(service)
