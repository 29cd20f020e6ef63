"""The terminal side of incidents through the real broker and gateway: an officer reports an
incident from its terminal (with its next burst as a voice note), a dispatcher assigns another
officer, who gets the assignment on its terminal and answers accepted / en route / on scene /
resolved with status messages; the dispatcher closes it. Availability from status codes."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from devices.client import TerminalClient
from gateway.service import GatewayService
from tests.gateway.incidents.conftest import wait_until


def _terminal(http: TestClient, service: GatewayService, device: str) -> TerminalClient:
    secret = http.post(
        "/api/devices", json={"id": device, "unit": "grid-01", "role": "officer"}
    ).json()["secret"]
    assert service.broker is not None
    terminal = TerminalClient(device, secret, service.broker.host, service.broker.port)
    terminal.connect()
    return terminal


def test_report_assign_answer_close_through_broker_and_gateway(
    api: tuple[TestClient, GatewayService],
) -> None:
    http, service = api
    reporter = _terminal(http, service, "T001")
    officer = _terminal(http, service, "T002")
    incidents = service.incidents
    try:
        wait_until(lambda: "T002" in incidents.officers.officers)  # directory reloaded
        lon, lat = service.org.grids["grid-01"].polygon[0]
        ack = reporter.report_incident(
            "police", "fight at the market", lat + 0.001, lon + 0.001, voice=True
        )
        assert ack["type"] == "report_ack"
        found: Callable[[], list[int]] = lambda: [  # noqa: E731
            i["id"] for i in http.get("/api/incidents").json() if i["reporter"] == "T001"
        ]
        wait_until(lambda: len(found()) == 1)
        (n,) = found()
        inc = http.get(f"/api/incidents/{n}").json()
        assert (inc["source"], inc["grid"], inc["category"]) == ("terminal", "grid-01", "police")
        # The reporter's next burst is the voice note.
        burst = reporter.request_floor(tg="grid-01")["burst"]
        reporter.release_floor(tg="grid-01")
        wait_until(lambda: http.get(f"/api/incidents/{n}").json()["voice"] == f"grid-01#{burst}")
        # Assignment arrives on the officer's terminal as a command.
        answer = http.post(f"/api/incidents/{n}/assign", json={"officers": ["T002"]})
        assert answer.status_code == 200, answer.text
        command = officer.wait_control("command", cmd="assign")
        assert (command["incident"], command["category"], command["grid"]) == (
            n, "police", "grid-01",
        )  # fmt: skip
        officer.ack(command["id"])
        for code in ("accepted", "en_route", "on_scene"):
            assert officer.status_msg(code, incident=n)["type"] == "status_ack"
        wait_until(lambda: http.get(f"/api/incidents/{n}").json()["state"] == "on_scene")
        officer.status_msg("resolved", "separated them", incident=n)
        wait_until(lambda: http.get(f"/api/incidents/{n}").json()["state"] == "resolved")
        closed = http.post(f"/api/incidents/{n}/close", json={"note": "both parties warned"})
        assert closed.json()["state"] == "closed"
        steps = [(s["action"], s["actor"]) for s in http.get(f"/api/incidents/{n}/timeline").json()]
        assert steps[0] == ("reported", "T001")
        assert ("linked", "T001") in steps and ("officer_accepted", "T002") in steps
        assert steps[-3:] == [
            ("officer_on_scene", "T002"), ("officer_resolved", "T002"), ("closed", steps[-1][1]),
        ]  # fmt: skip
        # A retried report (same request id) makes one incident; bad input is refused, counted.
        before = incidents.refused
        reporter.report_incident("nonsense", "x")
        wait_until(lambda: incidents.refused == before + 1)
        bad = reporter.request("report", category="police", text="x", lat=1.0)
        assert (bad["type"], bad["code"]) == ("error", "bad_field")
        # Availability is the officer's own state.
        officer.status_msg("off_duty")
        wait_until(lambda: incidents.officers.officers["T002"].availability == "off")
    finally:
        reporter.disconnect()
        officer.disconnect()


def test_an_sos_becomes_one_incident(api: tuple[TestClient, GatewayService]) -> None:
    http, service = api
    terminal = _terminal(http, service, "T001")
    try:
        terminal.sos(True)
        terminal.sos(False)
        terminal.sos(True)
        wait_until(lambda: any(i["source"] == "sos" for i in http.get("/api/incidents").json()))
        sos = [i for i in http.get("/api/incidents").json() if i["source"] == "sos"]
        assert len(sos) == 1 and sos[0]["reporter"] == "T001" and sos[0]["grid"] == "grid-01"
    finally:
        terminal.disconnect()
