"""Private calls live while they are used (§6): an idle call's floor and routes are dropped,
and a later call between the same devices continues its numbering. No sockets, injected clock."""

from __future__ import annotations

import json

from codec.frame import VoiceFrame, encode_frame
from gateway.control import CALL_IDLE_S, ControlPlane
from gateway.directory import build_directory
from gateway.metrics import Counters
from gateway.relay import Relay
from protocol.org import default_org
from tests.gateway.conftest import TEST_DEVICES
from tests.gateway.test_control import send, sent_to

KEY = "call:T001:T004"


def make_plane() -> tuple[ControlPlane, list[bytes]]:
    counters, published = Counters(), []
    relay = Relay([published.append], counters)
    plane = ControlPlane(build_directory(default_org(), TEST_DEVICES), relay, counters)
    for device in ("T001", "T002", "T004"):
        plane.handle(f"xixin/v1/dev/{device}/status", b'{"v":1,"state":"online"}', 0.0, 0)
    return plane, published


def frame(burst: int, seq: int = 0) -> bytes:
    return encode_frame(VoiceFrame(burst, seq, seq * 960, 20, (b"\x48" + bytes(40),), start=True))


def test_an_idle_call_is_forgotten_and_a_new_one_continues_its_numbering() -> None:
    plane, published = make_plane()
    relay = plane.relay
    send(plane, "T001", 0.0, type="floor_request", id="c1", call="T004")
    [granted] = sent_to(plane, "T001", "floor_granted")
    relay.call_frame("T001", frame(granted["burst"]))
    assert relay.counters.relayed == 1 and b"xixin/v1/dev/T004/voice/down" in published[-1]
    send(plane, "T001", 1.0, type="floor_release", id="r1", call="T004")

    plane.tick(1.0 + CALL_IDLE_S - 0.1, 0)
    assert KEY in plane.floors.calls and KEY in plane.floors.targets  # a conversation has pauses
    plane.tick(1.0 + CALL_IDLE_S, 0)
    assert KEY not in plane.floors.calls and KEY not in plane.floors.targets
    relay.call_frame("T001", frame(granted["burst"], 1))
    relay.call_frame("T004", frame(granted["burst"], 1))
    assert relay.counters.dropped["no_call"] == 2 and relay.counters.relayed == 1

    plane.outbox.clear()
    send(plane, "T004", 100.0, type="floor_request", id="c2", call="T001")
    [taken] = [
        json.loads(o.payload)
        for o in plane.outbox
        if o.topic.endswith("T001/ctrl/down") and b"floor_taken" in o.payload
    ]
    assert taken["call_no"] == 2  # the second call between the two, not a restart at 1
    [again] = sent_to(plane, "T004", "floor_granted")
    assert again["burst"] == taken["burst"] == granted["burst"] + 1
    relay.call_frame("T004", frame(again["burst"]))
    assert relay.counters.relayed == 2 and b"xixin/v1/dev/T001/voice/down" in published[-1]


def test_a_busy_call_is_kept_and_a_partys_newer_call_survives_the_old_ones_end() -> None:
    plane, published = make_plane()
    relay = plane.relay
    send(plane, "T001", 0.0, type="floor_request", id="c1", call="T004")
    send(plane, "T001", 1.0, type="floor_release", id="r1", call="T004")
    # T001 calls T002 before its call with T004 is forgotten; its call uplink now goes there.
    send(plane, "T001", CALL_IDLE_S, type="floor_request", id="c2", call="T002")
    [granted] = sent_to(plane, "T001", "floor_granted")[-1:]
    plane.tick(CALL_IDLE_S + 1.0, 0)
    assert KEY not in plane.floors.calls
    assert "call:T001:T002" in plane.floors.calls  # taken: never idle, never dropped
    relay.call_frame("T001", frame(granted["burst"]))
    assert relay.counters.relayed == 1 and b"xixin/v1/dev/T002/voice/down" in published[-1]
    relay.call_frame("T004", frame(1, 5))
    assert relay.counters.dropped["no_call"] == 1
