"""The control plane refuses a device over its control budget (docs/protocol.md §5.1), with a
fake clock."""

from __future__ import annotations

import json
from typing import Any

from gateway.control import ControlPlane
from protocol import limits
from protocol.control import ERROR_CODES
from tests.gateway.test_control import TG, make_plane, send, sent_to


def test_rate_limited_is_an_error_code() -> None:
    assert "rate_limited" in ERROR_CODES


def replies(plane: ControlPlane, device: str) -> list[dict[str, Any]]:
    found = [
        json.loads(o.payload) for o in plane.outbox if o.topic == f"xixin/v1/dev/{device}/ctrl/down"
    ]
    plane.outbox.clear()
    return found


def status_msg(plane: ControlPlane, device: str, now: float, n: int) -> None:
    for k in range(n):
        send(plane, device, now, type="status_msg", id=f"s{k}", code="x")


def test_a_device_over_its_control_budget_is_refused_counted_and_told_once_a_second() -> None:
    plane = make_plane()
    burst = limits.CONTROL_BURST
    status_msg(plane, "T003", 0.0, burst)
    assert [m["type"] for m in replies(plane, "T003")] == ["status_ack"] * burst
    status_msg(plane, "T003", 0.0, 500)  # the flood
    [error] = replies(plane, "T003")
    assert error == {
        "v": 1,
        "type": "error",
        "re": "s0",
        "code": "rate_limited",
        "message": error["message"],
    }
    assert plane.counters.rejected == {"rate_limited": 500}
    assert plane.counters.control_in == burst + 500
    assert plane.events == [] or all(e.kind == "status_msg" for e in plane.events)
    events = len(plane.events)
    status_msg(plane, "T003", 0.5, 100)  # 10 tokens refilled, still inside the reply second
    assert [m["type"] for m in replies(plane, "T003")] == ["status_ack"] * 10
    assert plane.counters.rejected["rate_limited"] == 590
    status_msg(plane, "T003", 1.0, 20)  # 10 more tokens; the reply second is over
    assert [m["type"] for m in replies(plane, "T003")] == ["status_ack"] * 10 + ["error"]
    assert len(plane.events) == events + 20
    # Another device is not touched by T003's flood.
    send(plane, "T001", 1.0, type="floor_request", id="r1", tg=TG)
    assert sent_to(plane, "T001", "floor_granted")


def test_refused_garbage_costs_no_parse_and_ack_and_rr_are_never_answered() -> None:
    plane = make_plane()
    status_msg(plane, "T003", 0.0, limits.CONTROL_BURST)
    replies(plane, "T003")
    send(plane, "T003", 0.0, type="ack", re="c1", ok=True)  # the one parse of this second
    plane.handle("xixin/v1/dev/T003/ctrl/up", b"\xff not json", 0.0, 0)
    assert replies(plane, "T003") == [], "ack is never answered; garbage is not even read"
    assert plane.counters.rejected == {"rate_limited": 2}
    status_msg(plane, "T003", 1.0, 20)  # what refilled in that second
    plane.handle("xixin/v1/dev/T003/ctrl/up", b"\xff not json", 1.0, 1000)
    *acks, error = replies(plane, "T003")
    assert len(acks) == 20
    assert error["code"] == "rate_limited" and "re" not in error


def test_release_and_sos_over_the_budget_are_handled_from_the_reserve() -> None:
    plane = make_plane()
    send(plane, "T001", 0.0, type="floor_request", id="r1", tg=TG)
    assert sent_to(plane, "T001", "floor_granted")
    status_msg(plane, "T001", 0.0, limits.CONTROL_BURST - 1 + 10)  # 10 over (1 went above)
    replies(plane, "T001")
    send(plane, "T001", 0.0, type="floor_release", id="r2", tg=TG)
    [released] = sent_to(plane, "T001", "floor_released")
    assert released["re"] == "r2"
    assert plane.floors[TG].holder is None, "the talker let go of the floor"
    send(plane, "T001", 0.0, type="sos", id="a1", active=True)
    assert sent_to(plane, "T001", "sos_ack")
    # A message that only looks like one takes from the reserve but is still refused.
    send(plane, "T001", 0.0, type="status_msg", id="s", code="sos")
    assert replies(plane, "T001") == []
    for k in range(limits.CONTROL_RESERVE_BURST):  # the reserve is bounded too
        send(plane, "T001", 0.0, type="floor_release", id=f"x{k}", tg=TG)
    released = sent_to(plane, "T001", "floor_released")
    assert len(released) == limits.CONTROL_RESERVE_BURST - 3
    assert plane.counters.rejected["rate_limited"] == 10 + 1 + 3
