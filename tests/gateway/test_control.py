"""The control plane without sockets (injected clock): receiver-report forwarding (§9.2)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.control import ControlPlane
from gateway.directory import build_directory
from gateway.metrics import Counters
from gateway.relay import Relay
from protocol.control import ControlError
from protocol.org import default_org
from tests.gateway.conftest import TEST_DEVICES

TG = "grid-01"


def make_plane() -> ControlPlane:
    counters = Counters()
    return ControlPlane(
        build_directory(default_org(), TEST_DEVICES), Relay([lambda _: None], counters), counters
    )


def send(plane: ControlPlane, device: str, now: float, **body: Any) -> None:
    payload = json.dumps({"v": 1, **body}).encode()
    plane.handle(f"xixin/v1/dev/{device}/ctrl/up", payload, now, int(now * 1000))


def sent_to(plane: ControlPlane, device: str, msg_type: str) -> list[dict[str, Any]]:
    found = [
        json.loads(o.payload) for o in plane.outbox if o.topic == f"xixin/v1/dev/{device}/ctrl/down"
    ]
    plane.outbox.clear()
    return [m for m in found if m["type"] == msg_type]


def rr(loss: float, burst: int, late: float = 0.0) -> dict[str, Any]:
    return {
        "type": "rr",
        "tg": TG,
        "burst": burst,
        "loss_pct": loss,
        "jitter_ms": 9.5,
        "late_pct": late,
        "expected": 50,
        "received": 46,
    }


def test_reports_reach_the_talker_at_most_every_half_second_worst_first() -> None:
    plane = make_plane()
    send(plane, "T001", 0.0, type="floor_request", id="r1", tg=TG)
    burst = sent_to(plane, "T001", "floor_granted")[0]["burst"]

    send(plane, "T002", 1.0, **rr(2.0, burst))
    [first] = sent_to(plane, "T001", "rr")
    assert first["from"] == "T002" and first["loss_pct"] == 2.0 and first["received"] == 46

    send(plane, "T003", 1.1, **rr(8.0, burst))
    send(plane, "T002", 1.2, **rr(1.0, burst, late=3.0))
    plane.tick(1.3, 1300)
    assert sent_to(plane, "T001", "rr") == []  # inside the window: held back
    plane.tick(1.5, 1500)
    [worst] = sent_to(plane, "T001", "rr")
    assert worst["from"] == "T003" and worst["loss_pct"] == 8.0
    plane.tick(3.0, 3000)
    assert sent_to(plane, "T001", "rr") == []  # nothing pending, nothing sent


def test_stale_own_and_invalid_reports_are_dropped_without_reply() -> None:
    plane = make_plane()
    send(plane, "T001", 0.0, type="floor_request", id="r1", tg=TG)
    burst = sent_to(plane, "T001", "floor_granted")[0]["burst"]
    send(plane, "T002", 0.1, **rr(5.0, burst + 1))  # not the current burst
    send(plane, "T001", 0.2, **rr(5.0, burst))  # the talker about itself
    send(plane, "T002", 0.3, type="rr", tg=TG, burst=burst, loss_pct=140, jitter_ms=1)
    send(plane, "T002", 0.4, type="rr", tg=TG, loss_pct=1, jitter_ms=1)
    assert sent_to(plane, "T001", "rr") == []
    assert sent_to(plane, "T002", "error") == []  # rr is never answered
    assert plane.counters.rejected == {"stale_rr": 2, "bad_rr": 2}


def test_a_held_report_dies_with_its_bursts_release_tail() -> None:
    plane = make_plane()
    send(plane, "T001", 0.0, type="floor_request", id="r1", tg=TG)
    burst = sent_to(plane, "T001", "floor_granted")[0]["burst"]
    send(plane, "T002", 0.1, **rr(1.0, burst))
    send(plane, "T003", 0.2, **rr(9.0, burst))
    plane.outbox.clear()
    send(plane, "T001", 0.3, type="floor_release", id="r2", tg=TG)
    plane.tick(1.4, 1400)  # the release tail (1 s) is over
    assert sent_to(plane, "T001", "rr") == []
    assert plane.counters.rejected == {"stale_rr": 1}


def test_a_report_sent_on_the_end_reaches_the_talker_after_its_release() -> None:
    plane = make_plane()
    send(plane, "T001", 0.0, type="floor_request", id="r1", tg=TG)
    burst = sent_to(plane, "T001", "floor_granted")[0]["burst"]
    send(plane, "T001", 2.0, type="floor_release", id="r2", tg=TG)
    send(plane, "T002", 2.02, **rr(3.0, burst))  # on the END, which came just before
    [last] = sent_to(plane, "T001", "rr")
    assert last["from"] == "T002" and last["burst"] == burst


def test_private_call_report_goes_to_the_peer() -> None:
    plane = make_plane()
    for device in ("T001", "T004"):
        plane.handle(f"xixin/v1/dev/{device}/status", b'{"v":1,"state":"online"}', 0.0, 0)
    send(plane, "T001", 0.0, type="floor_request", id="c1", call="T004")
    burst = sent_to(plane, "T001", "floor_granted")[0]["burst"]
    send(plane, "T004", 0.5, type="rr", call="T001", burst=burst, loss_pct=3, jitter_ms=4)
    [report] = sent_to(plane, "T001", "rr")
    assert report["from"] == "T004" and report["call"] == "T004"


def test_a_disabled_device_is_refused_but_never_answered_where_the_protocol_never_answers() -> None:
    """§5.1: `ack` and `rr` get no reply, not even an error; everything else gets `disabled`."""
    plane = make_plane()
    send(plane, "X001", 0.0, type="sos", id="s1", active=True)
    [error] = sent_to(plane, "X001", "error")
    assert (error["code"], error["re"]) == ("disabled", "s1")
    send(plane, "X001", 0.1, type="ack", re="c1", ok=True)
    send(plane, "X001", 0.2, **rr(2.0, 1))
    assert not [o for o in plane.outbox if o.topic.startswith("xixin/v1/dev/X001/")]
    assert plane.counters.rejected["disabled"] == 3


def test_a_command_that_cannot_be_encoded_changes_nothing() -> None:
    plane = make_plane()
    send(plane, "T001", 0.0, type="floor_request", id="r1", tg=TG)
    plane.outbox.clear()
    for fields in ({"text": float("nan")}, {"text": "\udc00"}):
        with pytest.raises(ControlError, match="cannot be encoded"):
            plane.send_command("T001", "stun", 1.0, 1000, **fields)
    assert "T001" not in plane.stunned and plane.floors[TG].holder == "T001"
    assert not plane.outbox and not plane.commands
    assert plane.send_command("T001", "text", 1.0, 1000, text="ok") == "c1"
