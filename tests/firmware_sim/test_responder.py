"""A simulated officer answers an incident assignment: accepted, en route (its fixes move
toward the incident), on scene where the incident is, resolved; then back to its patrol."""

from __future__ import annotations

import json
import random

from devices.session import Beacon
from firmware_sim.model import SendBeacon, SendRequest
from firmware_sim.responder import IncidentResponder, ResponderConfig, _distance_m
from tests.firmware_sim.helpers import Rig


def test_the_officer_answers_in_order_and_goes_to_the_incident() -> None:
    rig = Rig()
    rig.connect()
    here = rig.fw.gps.here(1.0) if rig.fw.gps else None
    assert here is not None
    target = (here[0] + 0.004, here[1] + 0.003)  # about 500 m away
    rig.feed("down", 1.0, type="command", id="a", cmd="assign", incident=7, grid="grid-01",
             lat=target[1], lon=target[0], text="fight")  # fmt: skip
    codes: list[str] = []
    fixes: list[tuple[float, Beacon]] = []
    now = 1.0
    while now < 2000 and "resolved" not in codes:
        now = rig.run(now + 5, now)
        for effect in rig.take():
            if isinstance(effect, SendRequest):
                body = json.loads(effect.message.payload)
                if body["type"] == "status_msg":
                    assert body["incident"] == 7
                    codes.append(body["code"])
                    if body["code"] == "on_scene":
                        arrived = now
            elif isinstance(effect, SendBeacon):
                fixes.append((now, effect.beacon))
    assert codes == ["accepted", "en_route", "on_scene", "resolved"]
    near = [b for t, b in fixes if t >= arrived]
    assert near and _distance_m((near[0].lon, near[0].lat), target) < 60  # fixes at the scene
    assert rig.fw.stats.incident_answers == {
        "accepted": 1, "en_route": 1, "on_scene": 1, "resolved": 1,
    }  # fmt: skip


def test_responder_timing_without_a_position_and_disabled() -> None:
    responder = IncidentResponder(ResponderConfig(), random.Random(3))
    responder.assign(3, None, None, 0.0)
    assert responder.position(1000.0) is None
    answered = responder.due(10_000.0)
    assert [code for _, code in answered] == ["accepted", "en_route", "on_scene", "resolved"]
    off = IncidentResponder(ResponderConfig(enabled=False), random.Random(3))
    off.assign(3, None, None, 0.0)
    assert off.due(10_000.0) == []
