"""Receiver reports (`rr`, docs/protocol.md §9.1) as the protocol builds and parses them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from protocol.control import ControlError, ReceiverReport, parse_request, rr_body


def test_rr_body_round_trips_through_the_gateway_parser() -> None:
    body = rr_body(
        burst=12,
        loss_pct=4.25,
        jitter_ms=11.04,
        call="T009",
        expected=50,
        received=48,
        late_pct=2.0,
        interval_ms=1000,
        sender="T002",
    )
    assert json.loads(json.dumps(body)) == {
        "v": 1,
        "type": "rr",
        "call": "T009",
        "burst": 12,
        "loss_pct": 4.2,
        "jitter_ms": 11.0,
        "expected": 50,
        "received": 48,
        "interval_ms": 1000,
        "late_pct": 2.0,
        "from": "T002",
    }
    parsed = parse_request(json.dumps(body).encode())
    assert isinstance(parsed, ReceiverReport)
    assert (parsed.burst, parsed.call, parsed.tg) == (12, "T009", None)
    assert parsed.extra["received"] == 48


def test_rr_body_names_exactly_one_target() -> None:
    with pytest.raises(ControlError):
        rr_body(burst=1, loss_pct=0.0, jitter_ms=0.0)
    with pytest.raises(ControlError):
        rr_body(burst=1, loss_pct=0.0, jitter_ms=0.0, tg="grid-07", call="T001")


@pytest.mark.parametrize(
    "change",
    [
        {"burst": None},
        {"burst": 0},
        {"burst": True},
        {"burst": 2.5},
        {"loss_pct": "3"},
        {"loss_pct": 101},
        {"loss_pct": -1},
        {"jitter_ms": 1e9},
        {"call": "T1"},  # both tg and call
        {"tg": None},  # neither
        {"tg": "Grid 7"},
        {"tg": "grid-07\n"},  # fullmatch, not `$`
        {"expected": 2.5},
        {"received": -1},
    ],
)
def test_bad_reports_are_bad_rr_and_never_answered(change: dict[str, Any]) -> None:
    message: dict[str, Any] = {"v": 1, "type": "rr", "tg": "grid-07", "burst": 3}
    message |= {"loss_pct": 2.0, "jitter_ms": 4.0}
    message.update(change)
    message = {k: v for k, v in message.items() if v is not None}
    with pytest.raises(ControlError) as caught:
        parse_request(json.dumps(message).encode())
    assert caught.value.code == "bad_rr"
    assert caught.value.reply is False


def test_a_radio_check_ack_carries_battery_and_signal() -> None:
    from protocol.control import CommandAck

    def ack(**extra: Any) -> bytes:
        return json.dumps({"v": 1, "type": "ack", "re": "c1", "ok": True, **extra}).encode()

    parsed = parse_request(ack(battery=81, signal=40))
    assert isinstance(parsed, CommandAck) and parsed.result() == {"battery": 81, "signal": 40}
    plain = parse_request(ack())
    assert isinstance(plain, CommandAck) and plain.result() is None
    for bad in ({"battery": 101}, {"signal": -1}, {"battery": "80"}, {"signal": 1.5}):
        with pytest.raises(ControlError) as caught:
            parse_request(ack(**bad))
        assert caught.value.code == "bad_field"


def test_an_sos_may_carry_its_position() -> None:
    from protocol.control import Sos

    def sos(**extra: Any) -> bytes:
        return json.dumps({"v": 1, "type": "sos", "id": "s1", "active": True, **extra}).encode()

    assert parse_request(sos(lat=30.5, lon=104.25)) == Sos("s1", True, 30.5, 104.25)
    assert parse_request(sos()) == Sos("s1", True)
    for bad in ({"lat": 30.5}, {"lat": 91, "lon": 0}, {"lat": 0, "lon": "x"}):
        with pytest.raises(ControlError) as caught:
            parse_request(sos(**bad))
        assert (caught.value.code, caught.value.re_id) == ("bad_field", "s1")
