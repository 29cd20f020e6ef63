"""The dispatch API and the assembled service: managed mosquitto with real accounts and ACL,
SQLite, the gateway runner owned by the app lifespan, terminals logging in with their secrets."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from devices.client import ConnectFailedError, TerminalClient
from gateway.service import GatewayService


def _terminal(service: GatewayService, device: str, secret: str) -> TerminalClient:
    assert service.broker is not None
    client = TerminalClient(device, secret, service.broker.host, service.broker.port)
    client.connect()
    return client


def _refused(service: GatewayService, device: str, secret: str) -> bool:
    """Whether the broker refuses `secret` now. The broker applies a change of its password
    file when it reloads, shortly after the API answered: callers poll this."""
    try:
        _terminal(service, device, secret).disconnect()
    except ConnectFailedError:
        return True
    return False


def _until(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_provision_login_floor_metrics_and_revoke(
    api: tuple[TestClient, GatewayService],
) -> None:
    http, service = api
    health = http.get("/api/health").json()
    assert health["status"] == "ok" and health["mqtt_connected"] is True
    # Connected, and only through the managed broker's Unix socket (terminals use TCP).
    assert service.broker is not None and service.runner is not None
    socket_path = str(service.broker.socket_path)
    assert service.runner.settings.broker.unix_path == socket_path
    assert all(p.options.unix_path == socket_path for p in service.runner.publishers)
    tracking = service.tracking
    assert tracking is not None
    _until(lambda: tracking.workers and all(w.client.is_connected for w in tracking.workers))
    assert all(w.client.options.unix_path == socket_path for w in tracking.workers)

    created = http.post("/api/devices", json={"id": "T001", "unit": "grid-01", "role": "officer"})
    assert created.status_code == 201
    secret = created.json()["secret"]
    assert "secret" not in http.get("/api/devices/T001").json()
    assert (
        http.post(
            "/api/devices", json={"id": "T001", "unit": "grid-01", "role": "officer"}
        ).status_code
        == 409
    )
    assert (
        http.post(
            "/api/devices", json={"id": "T002", "unit": "grid-99", "role": "officer"}
        ).status_code
        == 422
    )

    terminal = _terminal(service, "T001", secret)
    try:
        _until(lambda: http.get("/api/devices/T001").json()["presence"] == "online")
        terminal.affiliate(["grid-01"])
        assert terminal.request_floor(tg="grid-01")["type"] == "floor_granted"

        floors = {f["key"]: f for f in http.get("/api/floors").json()}
        assert floors["grid-01"]["holder"] == "T001" and floors["grid-01"]["state"] == "taken"
        talkgroups = {t["id"]: t for t in http.get("/api/talkgroups").json()}
        assert talkgroups["grid-01"]["talker"] == "T001"
        assert talkgroups["grid-01"]["affiliated"] == 1

        metrics = http.get("/metrics").text
        assert 'xixin_floor_events_total{event="grant"} 1.0' in metrics
        assert "xixin_devices_online 1.0" in metrics

        revoked = http.post("/api/floors/grid-01/revoke").json()
        assert revoked["holder"] is None
        assert terminal.wait_control("floor_revoke")["reason"] == "administrative"

        sent = http.post(
            "/api/devices/T001/commands",
            json={"cmd": "text", "fields": {"text": "到民盛小区东门集合"}},
        )
        assert sent.status_code == 202
        command = terminal.wait_control("command")
        assert command["cmd"] == "text" and command["text"] == "到民盛小区东门集合"
        unknown = http.post("/api/devices/T404/commands", json={"command": "stun"})
        assert unknown.status_code == 404
        assert http.post("/api/devices/T001/commands", json={"cmd": "text"}).status_code == 422
    finally:
        terminal.disconnect()


def test_wrong_secret_and_disabled_device_refused(api: tuple[TestClient, GatewayService]) -> None:
    http, service = api
    secret = http.post(
        "/api/devices", json={"id": "T009", "unit": "grid-03", "role": "guard"}
    ).json()["secret"]
    with pytest.raises(ConnectFailedError):
        _terminal(service, "T009", secret + "x")
    _terminal(service, "T009", secret).disconnect()
    assert http.post("/api/devices/T009/disable").json()["enabled"] is False
    _until(lambda: _refused(service, "T009", secret), timeout=30.0)
    rotated = http.post("/api/devices/T009/enable")
    assert rotated.status_code == 200
    new_secret = http.post("/api/devices/T009/rotate").json()["secret"]
    _until(lambda: _refused(service, "T009", secret), timeout=30.0)
    _until(lambda: not _refused(service, "T009", new_secret), timeout=30.0)


def test_event_stream_and_stored_floor_events(api: tuple[TestClient, GatewayService]) -> None:
    http, service = api
    secret = http.post(
        "/api/devices", json={"id": "D001", "unit": "centre", "role": "dispatcher"}
    ).json()["secret"]
    with http.websocket_connect("ws://localhost/api/events") as ws:
        terminal = _terminal(service, "D001", secret)
        try:
            seen = []
            while not any(e.get("kind") == "presence" for e in seen):
                seen.append(ws.receive_json())
            assert terminal.request_floor(tg="all")["type"] == "floor_granted"
            while not any(e.get("event") == "floor_granted" for e in seen):
                seen.append(ws.receive_json())
        finally:
            terminal.disconnect()

    from sqlalchemy import select

    from gateway.store.schema import floor_events

    def stored() -> list[str]:
        with service.engine.connect() as conn:
            return [row.event for row in conn.execute(select(floor_events.c.event))]

    _until(lambda: "floor_granted" in stored())


def test_device_added_by_cli_is_picked_up(api: tuple[TestClient, GatewayService]) -> None:
    _, service = api
    _device, secret = service.registry.add("T077", "grid-07", "officer")  # as `xixin devices add`
    _until(
        lambda: (
            service.runner is not None and service.runner.control.directory.get("T077") is not None
        )
    )
    terminal = _terminal(service, "T077", secret)
    try:
        assert terminal.request_floor(tg="grid-07")["type"] == "floor_granted"
    finally:
        terminal.disconnect()
