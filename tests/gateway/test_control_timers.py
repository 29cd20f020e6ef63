"""Floor timers through the control plane (§6), injected clock, no sockets: a tick wakes only
floors with something due, and frames keep moving the end-of-media deadline later."""

from __future__ import annotations

import json
from typing import Any

from codec.frame import VoiceFrame, encode_frame
from gateway.control import ControlPlane
from gateway.directory import build_directory
from gateway.floor import Floor
from gateway.metrics import Counters
from gateway.relay import Relay
from protocol.org import default_org
from tests.gateway.conftest import TEST_DEVICES
from tests.gateway.test_control import send

TG = "grid-01"
UP = f"xixin/v1/tg/{TG}/up/T001"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_plane() -> tuple[ControlPlane, Clock]:
    clock, counters = Clock(), Counters()
    relay = Relay([lambda _: None], counters, clock=clock)
    return ControlPlane(build_directory(default_org(), TEST_DEVICES), relay, counters), clock


def to(plane: ControlPlane, device: str) -> list[dict[str, Any]]:
    out = [json.loads(o.payload) for o in plane.outbox if o.topic.endswith(f"{device}/ctrl/down")]
    plane.outbox.clear()
    return out


def grant(plane: ControlPlane, now: float) -> int:
    send(plane, "T001", now, type="floor_request", id="q", tg=TG)
    [granted] = [m for m in to(plane, "T001") if m["type"] == "floor_granted"]
    return int(granted["burst"])


def talk(plane: ControlPlane, clock: Clock, burst: int, start: float, end: float) -> None:
    """Frames every 20 ms from `start` to `end`, ticking every 50 ms like the runner does."""
    seq, t = 0, start
    while t <= end + 1e-9:
        clock.now = t
        frame = VoiceFrame(burst, seq & 0xFFFF, seq * 960, 20, (b"\x48" + bytes(40),))
        plane.relay.talkgroup_frame(UP, encode_frame(frame))
        if seq % 5 == 0:
            plane.tick(t, 0)
        seq, t = seq + 1, start + (seq + 1) * 0.02


def test_frames_move_end_of_media_later_and_silence_ends_the_burst() -> None:
    plane, clock = make_plane()
    burst = grant(plane, 0.0)
    talk(plane, clock, burst, 0.0, 6.0)  # past the first end-of-media deadline (4 s)
    floor = plane.floors[TG]
    assert floor.holder == "T001" and not to(plane, "T001")
    plane.tick(9.9, 0)  # last frame at 6.0: due at 10.0
    assert floor.holder == "T001"
    plane.tick(10.0, 0)
    assert floor.holder is None
    [revoke] = [m for m in to(plane, "T001") if m["type"] == "floor_revoke"]
    assert revoke["reason"] == "no_media"


def test_max_burst_revokes_a_talker_who_never_pauses() -> None:
    plane, clock = make_plane()
    burst = grant(plane, 0.0)
    talk(plane, clock, burst, 0.0, 29.9)
    assert plane.floors[TG].holder == "T001"
    talk(plane, clock, burst, 29.92, 30.1)
    messages = to(plane, "T001")
    assert [m["reason"] for m in messages if m["type"] == "floor_revoke"] == ["max_duration"]


def test_a_tick_visits_only_floors_with_something_due(monkeypatch: Any) -> None:
    plane, _ = make_plane()
    visited: list[str] = []
    original = Floor.next_deadline

    def spy(self: Floor) -> float | None:
        visited.append(self.key)
        return original(self)

    monkeypatch.setattr(Floor, "next_deadline", spy)
    assert len(plane.floors.talkgroups) > 10  # the demo org's talkgroups
    grant(plane, 0.0)
    visited.clear()
    for step in range(1, 80):  # 4 s of ticks: nothing is due before end of media
        plane.tick(step * 0.05, 0)
    assert visited == []
    plane.tick(4.0, 0)
    assert set(visited) == {TG} and plane.floors[TG].holder is None
