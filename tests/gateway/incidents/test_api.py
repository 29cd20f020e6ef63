"""The incidents API on a full gateway (managed mosquitto, SQLite), signed in per tier: intake,
transitions, scope (a grid sees its grid's incidents only; an escalated one is the area's to
handle), suggestions, timeline, reports."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from gateway.alarms.queue import Position
from gateway.api import create_app
from gateway.api.incident_schemas import IncidentOut
from gateway.events import GatewayEvent
from gateway.service import GatewayService, ServiceConfig
from gateway.store.recordings import recordings
from tests.gateway.signin import bearer
from tests.gateway.signin import client as signin_client

ROLES = {
    "g1": "grid:grid-01", "g2": "grid:grid-02", "ar": "area:area-renxi",
    "af": "area:area-fengxi", "c": "centre", "v": "viewer",
}  # fmt: skip


@dataclass
class Env:
    http: TestClient
    service: GatewayService
    tokens: dict[str, str]

    def call(self, who: str, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return self.http.request(method, path, json=body, headers=headers)

    def new(self, who: str, **body: Any) -> dict[str, Any]:
        answer = self.call(who, "POST", "/api/incidents", {"text": "a fight", **body})
        assert answer.status_code == 201, answer.text
        found: dict[str, Any] = answer.json()
        return found

    def ids(self, who: str, query: str = "") -> set[int]:
        answer = self.call(who, "GET", f"/api/incidents{query}")
        assert answer.status_code == 200, answer.text
        return {i["id"] for i in answer.json()}

    def settle(self) -> None:
        deadline = time.monotonic() + 10
        while self.service.incidents.writer.backlog and time.monotonic() < deadline:
            time.sleep(0.02)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp: Path = tmp_path_factory.mktemp("incidents")
    service = GatewayService(ServiceConfig(data_dir=tmp, device_poll_s=0.2))
    try:
        service.migrate()
        for device, unit in (("T001", "grid-01"), ("T002", "grid-01"), ("T006", "grid-06")):
            service.registry.add(device, unit, "officer")
        with signin_client(create_app(service)) as http:
            tokens = {who: bearer(http, service, role, who) for who, role in ROLES.items()}
            yield Env(http, service, tokens)
    finally:
        service.close()


def test_a_grid_sees_its_grids_incidents_and_an_escalated_one_is_the_areas(env: Env) -> None:
    inc = env.new("g1", category="police", grid="grid-01")
    assert (inc["tier"], inc["unit"], inc["state"], inc["reporter"]) == (
        "grid", "grid-01", "reported", "g1",
    )  # fmt: skip
    assert inc["category_name_zh"] == "警情处置" and inc["source"] == "api"
    n = inc["id"]
    assert n in env.ids("g1") and n in env.ids("ar") and n in env.ids("c") and n in env.ids("v")
    assert n not in env.ids("g2") and n not in env.ids("af")
    assert env.call("g2", "GET", f"/api/incidents/{n}").status_code == 404
    assert env.call("g2", "POST", f"/api/incidents/{n}/accept", {}).status_code == 404
    assert env.call("g1", "POST", f"/api/incidents/{n}/accept", {}).json()["state"] == "accepted"
    assert env.call("g1", "POST", f"/api/incidents/{n}/escalate", {}).status_code == 422
    up = env.call("g1", "POST", f"/api/incidents/{n}/escalate", {"reason": "armed"}).json()
    assert (up["tier"], up["unit"], up["state"]) == ("area", "area-renxi", "reported")
    # The grid still sees it, but the area handles it now.
    assert n in env.ids("g1") and n in env.ids("ar", "?tier=area")
    assert n not in env.ids("ar", "?tier=grid")
    assert env.call("g1", "POST", f"/api/incidents/{n}/accept", {}).status_code == 403
    assert env.call("ar", "POST", f"/api/incidents/{n}/accept", {}).status_code == 200
    up = env.call("ar", "POST", f"/api/incidents/{n}/escalate", {"reason": "hard"}).json()
    assert (up["tier"], up["unit"]) == ("centre", "centre")
    assert env.call("ar", "POST", f"/api/incidents/{n}/accept", {}).status_code == 403
    assert env.call("c", "POST", f"/api/incidents/{n}/accept", {}).status_code == 200
    assert env.call("af", "GET", f"/api/incidents/{n}").status_code == 404
    board = env.call("c", "GET", "/api/incidents").json()  # sent without a second validation
    assert [IncidentOut.model_validate(i).id for i in board] == [i["id"] for i in board]


def test_intake_places_and_refusals(env: Env) -> None:
    # The position decides the grid (grid-06 is Fengxi's); a grid dispatcher cannot report there.
    lon, lat = env.service.org.grids["grid-06"].polygon[0]
    inside = {"lat": lat + 0.0005, "lon": lon + 0.0005}
    found = env.service.org.grid_at(inside["lon"], inside["lat"])
    assert found is not None
    assert env.call("g1", "POST", "/api/incidents", {
        "category": "police", "text": "x", "position": inside}).status_code == 403  # fmt: skip
    inc = env.new("c", category="police", position=inside)
    assert inc["grid"] == found and inc["position"] == inside
    assert env.new("g1", category="mediation")["grid"] == "grid-01"  # the caller's grid
    assert env.new("g1", category="anti-fraud")["tier"] == "area"  # its category's tier
    for body, status in (
        ({"category": "nope", "text": "x"}, 422),
        ({"category": "police", "text": ""}, 422),
        ({"category": "police", "text": "x", "grid": "grid-99"}, 422),
        ({"category": "police", "text": "x", "position": {"lat": "nan", "lon": 1}}, 422),
    ):
        assert env.call("c", "POST", "/api/incidents", body).status_code == status, body
    assert env.call("v", "POST", "/api/incidents", {"category": "police", "text": "x"}
                    ).status_code == 403  # fmt: skip
    assert env.call("c", "POST", "/api/incidents/from-alarm/999", {"category": "police"}
                    ).status_code == 404  # fmt: skip


def test_an_incident_from_an_alarm_of_the_queue(env: Env) -> None:
    """A dispatcher makes an incident of an open alarm (a left_grid in grid-01): its unit and
    position, linked by the alarm's id; another grid's dispatcher cannot see that alarm."""
    lon, lat = env.service.org.grids["grid-01"].polygon[0]
    alarm = env.service.alarms.queue.raise_alarm(
        "left_grid", "T001", "grid-01", time.time(), Position(lat, lon, time.time())
    )
    path = f"/api/incidents/from-alarm/{alarm.id}"
    assert env.call("g2", "POST", path, {"category": "police"}).status_code == 404
    answer = env.call("g1", "POST", path, {"category": "police"})
    assert answer.status_code == 201, answer.text
    made = answer.json()
    assert made["source"] == "alarm" and made["grid"] == "grid-01"


def test_the_closed_loop_with_officers_timeline_and_suggestions(env: Env) -> None:
    lon, lat = env.service.org.grids["grid-01"].polygon[0]
    inc = env.new("g1", category="police", grid="grid-01")
    n = inc["id"]
    env.service.incidents.observe_hub(
        [GatewayEvent("position", "T002", int(time.time() * 1000), {"lat": lat, "lon": lon})]
    )
    ranked = env.call("g1", "GET", f"/api/incidents/{n}/suggestions").json()
    assert [s["device"] for s in ranked] == ["T002"]  # the only officer in scope with a fix
    assert ranked[0]["same_grid"] and ranked[0]["availability"] == "available"
    assert env.call("g1", "POST", f"/api/incidents/{n}/assign", {"officers": ["T006"]}
                    ).status_code == 403  # fmt: skip
    done = env.call("g1", "POST", f"/api/incidents/{n}/assign", {"officers": ["T002"]}).json()
    assert (done["state"], done["officers"]) == ("assigned", ["T002"])
    assert env.service.incidents.officers.officers["T002"].availability == "busy"
    assert env.call("g1", "GET", f"/api/incidents/{n}/suggestions").json() == []
    env.service.incidents.officer_answer(n, "T002", "on_scene")
    assert env.call("g1", "POST", f"/api/incidents/{n}/close", {"note": "x"}).status_code == 409
    assert env.call("g1", "POST", f"/api/incidents/{n}/resolve", {}).status_code == 200
    assert env.call("g1", "POST", f"/api/incidents/{n}/close", {}).status_code == 422
    closed = env.call("g1", "POST", f"/api/incidents/{n}/close", {"note": "calm"}).json()
    assert (closed["state"], closed["resolution"], closed["closed_tier"]) == (
        "closed", "calm", "grid",
    )  # fmt: skip
    assert env.service.incidents.officers.officers["T002"].availability == "available"
    steps = env.call("g1", "GET", f"/api/incidents/{n}/timeline").json()
    assert [(s["action"], s["actor"]) for s in steps] == [
        ("reported", "g1"), ("accepted", "g1"), ("assigned", "g1"),
        ("officer_on_scene", "T002"), ("resolved", "g1"), ("closed", "g1"),
    ]  # fmt: skip
    reopened = env.call("c", "POST", f"/api/incidents/{n}/reopen", {"reason": "again"}).json()
    assert (reopened["state"], reopened["reopens"]) == ("accepted", 1)


def test_reports_json_and_csv_in_scope(env: Env) -> None:
    n = env.new("g2", category="property", grid="grid-02")["id"]
    env.call("g2", "POST", f"/api/incidents/{n}/accept", {})
    env.call("g2", "POST", f"/api/incidents/{n}/resolve", {"note": "ok"})
    env.call("g2", "POST", f"/api/incidents/{n}/close", {"note": "ok"})
    env.settle()
    rows = env.call("g2", "GET", "/api/incidents/reports?period=all").json()
    assert [(r["tier"], r["category"], r["incidents"], r["closed"]) for r in rows] == [
        ("grid", "property", 1, 1)
    ]
    everything = env.call("c", "GET", "/api/incidents/reports?period=all").json()
    assert sum(r["incidents"] for r in everything) == len(env.ids("c", "?state=all"))
    csv = env.call("c", "GET", "/api/incidents/reports?format=csv")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0].startswith("period,tier,category,incidents")
    assert env.call("g2", "GET", "/api/incidents/reports?period=year").status_code == 422
    history = env.call("g2", "GET", "/api/incidents?state=all").json()
    assert {i["id"] for i in history} == {n}
    assert env.http.get("/api/incidents").status_code == 401


def test_an_incident_talkgroups_recordings_are_seen_with_the_incident(env: Env) -> None:
    n = env.new("g1", category="police", grid="grid-01")["id"]
    tg = f"inc-{n}"
    with env.service.engine.begin() as conn:  # a talker of another area: only the tg places it
        rec = conn.execute(
            insert(recordings).values(
                floor_key=tg, talker="T006", burst=1, started_at=5.0, ended_at=6.0,
                duration_ms=1000, frames=50, lost_frames=0, path="none.ogg",
            )
        ).inserted_primary_key[0]  # fmt: skip

    def listed(who: str) -> list[int]:
        answer = env.call(who, "GET", f"/api/recordings?talkgroup={tg}")
        assert answer.status_code == 200, answer.text
        return [r["id"] for r in answer.json()]

    assert listed("g1") == [rec] and listed("ar") == [rec] and listed("c") == [rec]
    assert listed("g2") == []
    assert env.call("g2", "GET", f"/api/recordings/{rec}/audio").status_code == 403
    assert env.call("g1", "GET", f"/api/recordings/{rec}/audio").status_code == 404  # no file
    env.call("g1", "POST", f"/api/incidents/{n}/accept", {})
    env.call("g1", "POST", f"/api/incidents/{n}/escalate", {"reason": "armed"})
    assert listed("g1") == [rec] and listed("ar") == [rec] and listed("g2") == []
    env.settle()
    env.service.incidents.incidents.pop(n)  # no longer held in memory: read from the database
    assert listed("g1") == [rec] and listed("g2") == []
    assert listed("af") == [rec]  # its talker's area
