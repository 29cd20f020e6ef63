"""Alarms and commands through the real broker, gateway, tracking and SQLite: an SOS raised by a
terminal becomes an alarm with its last position, is acknowledged and closed; commands to an
offline terminal wait and are delivered when it connects; a radio check is answered; a restart
keeps open alarms, queued commands and the stun; a grid dispatcher cannot touch another grid."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from devices.client import TerminalClient
from devices.values import Beacon
from gateway.alarms.queue import AlarmPolicy
from gateway.api import create_app
from gateway.service import GatewayService, ServiceConfig
from tests.gateway.signin import ORIGIN, bearer, sign_in
from tests.gateway.signin import client as signin_client

HERE = (30.6598, 104.0633)  # lat, lon


def until(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


class Gateway:
    """A full gateway service on a data directory, with a signed-in admin client."""

    def __init__(self, data_dir: Path, admin: str, **config: Any) -> None:
        self.service = GatewayService(ServiceConfig(data_dir=data_dir, device_poll_s=0.2, **config))
        self._context = signin_client(create_app(self.service))
        self.http: TestClient = self._context.__enter__()
        sign_in(self.http, self.service, "admin", admin)

    def terminal(self, device: str, secret: str, **attrs: Any) -> TerminalClient:
        broker, tracking = self.service.broker, self.service.tracking
        assert broker is not None and tracking is not None
        until(lambda: device in tracking.devices)  # tracking re-reads the registry every 2 s
        client = TerminalClient(device, secret, broker.host, broker.port)
        for name, value in attrs.items():
            setattr(client, name, value)
        client.connect()
        until(lambda: self.device(device)["online"])
        return client

    def device(self, device: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.http.get(f"/api/devices/{device}").json()
        return answer

    def command(self, device: str, body: dict[str, Any]) -> dict[str, Any]:
        sent = self.http.post(f"/api/devices/{device}/commands", json=body)
        assert sent.status_code == 202, sent.text
        answer: dict[str, Any] = sent.json()
        return answer

    def command_state(self, device: str, command_id: str) -> dict[str, Any]:
        rows = self.http.get(f"/api/devices/{device}/commands").json()
        row: dict[str, Any] = next(r for r in rows if r["id"] == command_id)
        return row

    def alarms(self, **params: str) -> list[dict[str, Any]]:
        answer = self.http.get("/api/alarms", params=params)
        assert answer.status_code == 200, answer.text
        found: list[dict[str, Any]] = answer.json()
        return found

    def close(self) -> None:
        try:
            self._context.__exit__(None, None, None)
        finally:
            self.service.close()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(tmp_path, "admin")
    try:
        yield gw
    finally:
        gw.close()


def add(gw: Gateway, device: str, unit: str) -> str:
    made = gw.http.post("/api/devices", json={"id": device, "unit": unit, "role": "officer"})
    assert made.status_code == 201, made.text
    secret: str = made.json()["secret"]
    return secret


def test_sos_becomes_an_alarm_with_its_position_then_is_acknowledged_and_closed(
    gateway: Gateway,
) -> None:
    secret = add(gateway, "T001", "grid-01")
    terminal = gateway.terminal("T001", secret)
    try:
        terminal.send_beacon(Beacon(int(time.time() * 1000), *HERE, bat=64))
        # the device record shows tracking's battery (its status had none)
        until(lambda: gateway.device("T001")["battery"] == 64)
        assert terminal.sos(True)["type"] == "sos_ack"  # no position in the message
        (alarm,) = until(lambda: gateway.alarms(kind="sos"))
        assert alarm["device"] == "T001" and alarm["unit"] == "grid-01"
        assert alarm["state"] == "unattended" and alarm["active"] is True
        assert (alarm["position"]["lat"], alarm["position"]["lon"]) == HERE
        assert gateway.device("T001")["sos"] is True

        refused = gateway.http.post(f"/api/alarms/{alarm['id']}/close",
                                    json={"outcome": "valid", "note": "x"})  # fmt: skip
        assert refused.status_code == 409  # acknowledge first
        acked = gateway.http.post(f"/api/alarms/{alarm['id']}/ack")
        assert acked.status_code == 200, acked.text
        assert acked.json()["state"] == "acknowledged" and acked.json()["acknowledged_by"]
        assert gateway.http.post(f"/api/alarms/{alarm['id']}/ack").status_code == 409
        blank = {"outcome": "valid", "note": "  "}
        assert gateway.http.post(f"/api/alarms/{alarm['id']}/close", json=blank).status_code == 422
        closed = gateway.http.post(
            f"/api/alarms/{alarm['id']}/close",
            json={"outcome": "false_alarm", "note": "pressed in a pocket"},
        ).json()
        assert closed["state"] == "closed" and closed["outcome"] == "false_alarm"
        assert gateway.alarms(kind="sos") == [], gateway.alarms(kind="sos", state="all")
        (kept,) = gateway.alarms(kind="sos", state="all")
        assert kept["note"] == "pressed in a pocket" and kept["closed_at"] >= kept["raised_at"]
        actions = {r["action"] for r in gateway.http.get("/api/audit").json()}
        assert {"alarm_ack", "alarm_close"} <= actions

        # an SOS that carries the terminal's own position is placed there
        terminal.position = (30.70, 104.10)
        terminal.sos(False)
        terminal.sos(True)
        fresh = until(lambda: [a for a in gateway.alarms(kind="sos") if a["id"] != alarm["id"]])
        assert (fresh[0]["position"]["lat"], fresh[0]["position"]["lon"]) == (30.70, 104.10)
    finally:
        terminal.disconnect()


def test_commands_to_an_offline_terminal_are_delivered_when_it_connects(
    gateway: Gateway,
) -> None:
    secret = add(gateway, "T002", "grid-01")
    assert (
        gateway.http.post("/api/devices/T002/commands", json={"command": "text"}).status_code == 422
    )
    text = gateway.command("T002", {"command": "text", "text": "到东门集合"})
    check = gateway.command("T002", {"command": "radio_check"})
    assert (text["state"], check["state"]) == ("queued", "queued")
    terminal = gateway.terminal("T002", secret, battery=77, signal=64)
    try:
        got = terminal.wait_control("command", timeout=10, cmd="text")
        assert got["id"] == text["id"] and got["text"] == "到东门集合"
        assert gateway.command_state("T002", text["id"])["state"] == "pending"
        terminal.ack(got["id"])
        until(lambda: gateway.command_state("T002", text["id"])["state"] == "acknowledged")
        # the client answered the radio check itself, with its battery and signal
        answered = until(
            lambda: (
                (row := gateway.command_state("T002", check["id"]))["state"] == "acknowledged"
                and row
            )
        )
        assert answered["result"] == {"battery": 77, "signal": 64}
        # online now: a command goes out at once
        stun = gateway.command("T002", {"command": "stun"})
        assert stun["state"] == "pending" and gateway.device("T002")["stunned"] is True
        assert terminal.wait_control("command", timeout=10, cmd="stun")["id"] == stun["id"]
        assert gateway.http.post("/api/devices/T002/disable").status_code == 200
        until(lambda: gateway.device("T002")["online"] is False)
    finally:
        terminal.disconnect()


def test_a_restart_keeps_open_alarms_queued_commands_and_the_stun(tmp_path: Path) -> None:
    first = Gateway(tmp_path, "admin")
    try:
        secret1 = add(first, "T001", "grid-01")
        secret2 = add(first, "T002", "grid-02")
        terminal = first.terminal("T001", secret1)
        try:
            terminal.sos(True)
            (alarm,) = until(lambda: first.alarms(kind="sos"))
        finally:
            terminal.disconnect()
        queued = first.command("T002", {"command": "status", "code": "return_to_base"})
        stun = first.command("T002", {"command": "stun"})
        assert (queued["state"], stun["state"]) == ("queued", "queued")
    finally:
        first.close()

    second = Gateway(tmp_path, "admin2")
    try:
        (again,) = second.alarms(kind="sos")
        assert again["id"] == alarm["id"] and again["state"] == "unattended"
        assert second.device("T002")["stunned"] is True
        commands = second.http.get("/api/devices/T002/commands").json()
        assert [c["id"] for c in commands] == [stun["id"], queued["id"]]
        terminal = second.terminal("T002", secret2)
        try:
            got = terminal.wait_control("command", timeout=10, cmd="status")
            assert got["id"] == queued["id"] and got["code"] == "return_to_base"
            assert terminal.wait_control("command", timeout=10, cmd="stun")["id"] == stun["id"]
            assert second.command("T002", {"command": "text", "text": "x"})["id"] not in {
                queued["id"], stun["id"],
            }  # fmt: skip
        finally:
            terminal.disconnect()
        assert second.http.post(f"/api/alarms/{alarm['id']}/ack").status_code == 200
    finally:
        second.close()


def test_a_grid_dispatcher_cannot_act_on_another_grids_alarm_or_device(
    gateway: Gateway,
) -> None:
    secret6 = add(gateway, "T006", "grid-06")
    add(gateway, "T001", "grid-01")
    terminal = gateway.terminal("T006", secret6)
    try:
        terminal.sos(True)
        (alarm,) = until(lambda: gateway.alarms(kind="sos"))
    finally:
        terminal.disconnect()
    http = gateway.http
    grid = {"Authorization": f"Bearer {bearer(http, gateway.service, 'grid:grid-01', 'g1')}"}
    other = {"Authorization": f"Bearer {bearer(http, gateway.service, 'grid:grid-06', 'g6')}"}
    viewer = {"Authorization": f"Bearer {bearer(http, gateway.service, 'viewer', 'v1')}"}
    cookies = dict(http.cookies)
    http.cookies.clear()  # bearer only
    try:
        assert http.get("/api/alarms", headers=grid).json() == []
        assert http.post(f"/api/alarms/{alarm['id']}/ack", headers=grid).status_code == 404
        assert http.post(f"/api/alarms/{alarm['id']}/ack", headers=viewer).status_code == 403
        text = {"command": "text", "text": "x"}
        assert http.post("/api/devices/T006/commands", json=text, headers=grid).status_code == 403
        assert http.get("/api/devices/T006/commands", headers=grid).status_code == 403
        assert http.post("/api/devices/T001/commands", json=text, headers=grid).status_code == 202
        assert [a["id"] for a in http.get("/api/alarms", headers=other).json()] == [alarm["id"]]
        acked = http.post(f"/api/alarms/{alarm['id']}/ack", headers=other)
        assert acked.status_code == 200 and acked.json()["acknowledged_by"] == "g6"
    finally:
        http.cookies.update(cookies)


def test_an_unattended_sos_escalates_and_every_change_is_streamed(tmp_path: Path) -> None:
    gw = Gateway(tmp_path, "admin", alarms=AlarmPolicy(escalate_after_s=1.0))
    try:
        secret = add(gw, "T001", "grid-01")
        terminal = gw.terminal("T001", secret)
        seen: list[dict[str, Any]] = []
        token = bearer(gw.http, gw.service, "area:" + str(gw.service.org.parent("grid-01")), "a1")
        headers = {"Origin": ORIGIN, "Authorization": f"Bearer {token}"}
        with gw.http.websocket_connect("ws://localhost/api/events", headers=headers) as ws:

            def read() -> None:  # until the alarm has reached the centre
                while not any(m["alarm"]["escalations"] == 2 for m in seen):
                    message = ws.receive_json()
                    if message["kind"] == "alarm":
                        seen.append(message)

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            try:
                terminal.sos(True)
                reader.join(30)
            finally:
                terminal.disconnect()
            assert not reader.is_alive(), f"no escalation to the centre streamed: {seen}"
        org = gw.service.org
        area = org.parent("grid-01")
        steps = [(m["alarm"]["state"], m["alarm"]["escalated_to"]) for m in seen]
        assert steps == [
            ("unattended", None), ("unattended", area), ("unattended", org.centre.id),
        ]  # fmt: skip
        assert all(m["device"] == "T001" for m in seen)
        (alarm,) = gw.alarms(kind="sos")
        assert alarm["escalations"] == 2 and alarm["escalated_to"] == org.centre.id
    finally:
        gw.close()
