"""Parsing of protocol §5.6: `report` requests and `status_msg` with an incident."""

from __future__ import annotations

import json
from typing import Any

import pytest

from protocol.control import ControlError, IncidentReport, StatusMessage, parse_request


def _msg(**body: Any) -> bytes:
    return json.dumps({"v": 1, "id": "r1", **body}).encode()


def test_a_report_parses_with_and_without_a_position() -> None:
    full = parse_request(
        _msg(type="report", category="police", text="fight", lat=30.86, lon=120.11, voice=True)
    )
    assert full == IncidentReport("r1", "police", "fight", 30.86, 120.11, True)
    bare = parse_request(_msg(type="report", category="legal-aid", text="wage dispute"))
    assert bare == IncidentReport("r1", "legal-aid", "wage dispute", None, None, False)


@pytest.mark.parametrize(
    "change",
    [
        {"category": "Police"},
        {"category": ""},
        {"category": 7},
        {"text": ""},
        {"text": "   "},
        {"text": "x" * 1001},
        {"lat": 30.0},  # without lon
        {"lat": 91.0, "lon": 120.0},
        {"lat": True, "lon": 120.0},
        {"voice": "yes"},
    ],
)
def test_bad_reports_are_bad_field_with_the_request_id(change: dict[str, Any]) -> None:
    body = {"type": "report", "category": "police", "text": "fight", **change}
    with pytest.raises(ControlError) as caught:
        parse_request(_msg(**body))
    assert (caught.value.code, caught.value.re_id) == ("bad_field", "r1")


@pytest.mark.parametrize(
    ("incident", "ok"), [(7, True), (None, True), (0, False), ("7", False), (True, False),
                         (1.0, False), (2**53, False)],
)  # fmt: skip
def test_status_msg_carries_an_incident_number(incident: object, ok: bool) -> None:
    body = {"type": "status_msg", "code": "on_scene"}
    if incident is not None:
        body["incident"] = incident  # type: ignore[assignment]
    if ok:
        assert parse_request(_msg(**body)) == StatusMessage("r1", "on_scene", None, incident)  # type: ignore[arg-type]
    else:
        with pytest.raises(ControlError, match="incident"):
            parse_request(_msg(**body))
