"""The demo's simulated dispatcher moves incidents through the loop (an injected clock)."""

from __future__ import annotations

import random
from pathlib import Path

import sqlalchemy

from tests.gateway.incidents.conftest import Clock, clock, engine, make_service, settle  # noqa: F401
from xixin.demo_incidents import step


def test_the_demo_dispatcher_reports_accepts_assigns_and_closes(
    engine: sqlalchemy.Engine,  # noqa: F811
    tmp_path: Path,
    clock: Clock,  # noqa: F811
) -> None:
    service = make_service(engine, tmp_path / "j", clock)
    service.set_officers([("T001", "grid-01", "officer", True)])
    lon, lat = service.org.grids["grid-01"].centre
    service.officers.position("T001", lat, lon, clock.now)
    step(service, service.org, ["grid-01"], random.Random(1))
    (incident,) = service.incidents.values()  # the first round reports one at once
    for _ in range(3):  # accept after 5 s, assign after 3 more
        clock.now += 6
        step(service, service.org, ["grid-01"], random.Random(2))
    current = service.incidents[incident.id]
    assert (current.state, current.officers) == ("assigned", ("T001",))
    service.officer_answer(incident.id, "T001", "resolved", "done")
    clock.now += 11
    step(service, service.org, ["grid-01"], random.Random(2))
    assert service.incidents[incident.id].state == "closed"
    settle(service)
