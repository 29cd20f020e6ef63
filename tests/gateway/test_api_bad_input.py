"""Bad input to the dispatch API: a clear 422/404, never a 500, and never a half-applied action."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from devices.client import TerminalClient
from gateway.service import GatewayService
from protocol.limits import MAX_JSON_BYTES

API = tuple[TestClient, GatewayService]
JSON = {"content-type": "application/json"}


def _add_device(http: TestClient, device: str = "T001") -> str:
    created = http.post("/api/devices", json={"id": device, "unit": "grid-01", "role": "officer"})
    assert created.status_code == 201
    secret: str = created.json()["secret"]
    return secret


def _refused(response: object, *words: str) -> None:
    """A 422 whose body is valid JSON naming the problem."""
    assert response.status_code == 422, response.text  # type: ignore[attr-defined]
    text = json.dumps(response.json()["detail"])  # type: ignore[attr-defined]
    for word in words:
        assert word in text, text


def _nothing_sent(service: GatewayService) -> None:
    assert service.runner is not None
    control = service.runner.control
    assert control.commands == {} and control.stunned == set()


# ---- commands ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["now", "device", "wall_ms", "cmd", "id", "type", "v", "self", "msg_type"]
)
def test_command_fields_may_not_use_message_keys(api: API, key: str) -> None:
    http, service = api
    _add_device(http)
    sent = http.post("/api/devices/T001/commands", json={"cmd": "stun", "fields": {key: "x"}})
    _refused(sent, key, "reserved")
    _nothing_sent(service)  # in particular, not stunned


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('{"cmd":"text","fields":{"text":NaN}}', ["NaN"]),
        ('{"cmd":"config","fields":{"settings":{"beacon_interval_s":Infinity}}}', ["Infinity"]),
        ('{"cmd":"config","fields":{"settings":{"x":[1,-Infinity]}}}', ["Infinity"]),
        ('{"cmd":"text","fields":{"text":"a\\ud800b"}}', ["surrogate"]),
        ('{"cmd":"config","fields":{"settings":{"\\udfff":1}}}', ["surrogate"]),
        ('{"cmd":"text","fields":{"\\ud83d":"x"}}', ["surrogate"]),
    ],
)
def test_command_fields_must_be_valid_json(api: API, body: str, words: list[str]) -> None:
    http, service = api
    _add_device(http)
    sent = http.post("/api/devices/T001/commands", content=body.encode(), headers=JSON)
    _refused(sent, *words)
    _nothing_sent(service)


@pytest.mark.parametrize(
    "body",
    [
        '{"cmd":"","fields":{}}',
        '{"cmd":"' + "x" * 5000 + '"}',
        '{"cmd":"\\ud800"}',
        '{"cmd":NaN}',
        '{"cmd":"stun","fields":[]}',
    ],
)
def test_bad_cmd_refused(api: API, body: str) -> None:
    http, service = api
    _add_device(http)
    _refused(http.post("/api/devices/T001/commands", content=body.encode(), headers=JSON))
    _nothing_sent(service)


def test_command_must_fit_the_terminals_json_limit(api: API) -> None:
    http, service = api
    secret = _add_device(http)
    for text in ("x" * 10_000, "集" * 1400):  # 10 KB; 1400 characters but 4200 bytes
        _refused(
            http.post("/api/devices/T001/commands", json={"cmd": "text", "fields": {"text": text}}),
            str(MAX_JSON_BYTES),
        )
    _nothing_sent(service)

    # what is accepted does reach the terminal, even with the command counter far along
    assert service.broker is not None and service.runner is not None
    service.runner.control.command_log.issued = 9_999_999
    terminal = TerminalClient("T001", secret, service.broker.host, service.broker.port)
    terminal.connect()
    try:
        # Subscribed once the gateway has its status: the terminal subscribes, then publishes
        # it, on one connection (a command sent before the SUBACK could be lost, under load).
        control = service.runner.control
        deadline = time.monotonic() + 10
        while getattr(control.presence.get("T001"), "state", None) != "online":
            assert time.monotonic() < deadline, "the terminal never came online"
            time.sleep(0.02)
        text = "集" * 1300 + "x" * 100  # 4000 bytes of text
        body = {"cmd": "text", "fields": {"text": text}}
        sent = http.post("/api/devices/T001/commands", json=body)
        assert sent.status_code == 202, sent.text
        command = terminal.wait_control("command")
        assert command["text"] == text and command["id"] == sent.json()["id"]
    finally:
        terminal.disconnect()


# ---- integers that reach the database ------------------------------------------------------------


@pytest.mark.parametrize(
    "recording_id", ["9223372036854775808", "9223372036854775807", "2147483648", "-1", "0"]
)
def test_recording_id_out_of_range(api: API, recording_id: str) -> None:
    http, _ = api
    answer = http.get(f"/api/recordings/{recording_id}/audio")
    assert answer.status_code in (404, 422), answer.text
    assert answer.json()["detail"]


@pytest.mark.parametrize("limit", ["0", "1001", "9223372036854775808", "-9223372036854775809"])
def test_recordings_limit_out_of_range(api: API, limit: str) -> None:
    http, _ = api
    _refused(http.get("/api/recordings", params={"limit": limit}), "limit")


@pytest.mark.parametrize("limit", ["0", "10001", "9223372036854775808"])
def test_tracking_events_limit_out_of_range(api: API, limit: str) -> None:
    http, _ = api
    _refused(http.get("/api/tracking/events", params={"limit": limit}), "limit")


@pytest.mark.parametrize("visits", [0, 1001, 2**31, 2**63, 10**30])
def test_checkpoint_required_visits_out_of_range(api: API, visits: int) -> None:
    http, _ = api
    checkpoint = {"id": "cp-1", "grid": "grid-01", "lat": 30.0, "lon": 120.0,
                  "required_visits": visits}  # fmt: skip
    _refused(http.post("/api/tracking/checkpoints", json=checkpoint), "required_visits")
    assert http.get("/api/tracking/checkpoints").json() == []
    added = http.post("/api/tracking/checkpoints", json=checkpoint | {"required_visits": 1000})
    assert added.status_code == 201 and added.json()["required_visits"] == 1000


@pytest.mark.parametrize(
    "url",
    [
        "/api/recordings?since=nan",
        "/api/recordings?until=inf",
        "/api/tracking/events?start=nan",
        "/api/tracking/coverage?start=nan&end=1",
        "/api/tracking/coverage.csv?start=0&end=inf",
    ],
)
def test_a_time_that_is_not_a_number_is_refused(api: API, url: str) -> None:
    http, _service = api
    answer = http.get(url)
    assert answer.status_code == 422, answer.text
    assert "finite" in answer.text, answer.text
