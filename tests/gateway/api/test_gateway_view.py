"""GatewayView: the API's read facade over a runner (not connected: no broker needed)."""

from __future__ import annotations

import json
from typing import Any

from gateway.api.services.gateway_view import GatewayView
from gateway.directory import build_directory
from gateway.runner import GatewayRunner, GatewaySettings
from gateway.store.registry import Device
from protocol.org import default_org
from tests.gateway.conftest import TEST_DEVICES
from transport.address import BrokerAddress

TG = "grid-01"


def make_view() -> tuple[GatewayView, GatewayRunner]:
    directory = build_directory(default_org(), TEST_DEVICES)
    runner = GatewayRunner(GatewaySettings(BrokerAddress("127.0.0.1", 1)), directory)
    runner.client.publish_nowait = lambda *args, **kwargs: None  # type: ignore[method-assign]
    return GatewayView(runner), runner


def send(runner: GatewayRunner, device: str, suffix: str, **body: Any) -> None:
    payload = json.dumps({"v": 1, **body}).encode()
    runner.control.handle(f"xixin/v1/dev/{device}/{suffix}", payload, 0.0, 1000)


def test_devices_show_presence_talkgroups_and_sos() -> None:
    view, runner = make_view()
    send(runner, "T001", "status", state="online", battery=55)
    send(runner, "T001", "ctrl/up", type="sos", id="s1", active=True)
    out = view.device(Device("T001", "one", "grid-01", "officer", True, 0.0))
    assert (out.presence, out.presence_since_ms, out.battery, out.sos) == ("online", 1000, 55, True)
    assert TG in out.talkgroups
    unknown = view.device(Device("X9", "x", "grid-01", "officer", True, 0.0))
    assert (unknown.presence, unknown.talkgroups, unknown.sos) == ("unknown", [], False)
    assert view.is_known("T001") and not view.is_known("X9")
    health = view.health()
    assert health.status == "degraded" and health.devices_online == 1


def test_talkgroups_floors_and_revoke() -> None:
    view, runner = make_view()
    send(runner, "T001", "ctrl/up", type="floor_request", id="r1", tg=TG)
    send(runner, "T002", "ctrl/up", type="floor_request", id="r2", tg=TG)
    [talkgroup] = [t for t in view.talkgroups() if t.id == TG]
    assert talkgroup.talker == "T001" and talkgroup.affiliated == 2
    [floor] = [f for f in view.floors() if f.key == TG]
    assert floor.holder == "T001" and [q.device for q in floor.queue] == ["T002"]
    revoked = view.revoke(TG)
    assert revoked is not None and revoked.holder != "T001"
    assert view.revoke("no-such-floor") is None


def test_health_lists_problems_and_is_ok_only_without_them() -> None:
    directory = build_directory(default_org(), TEST_DEVICES)
    runner = GatewayRunner(GatewaySettings(BrokerAddress("127.0.0.1", 1)), directory)
    problems: list[str] = []
    view = GatewayView(runner, problems=lambda: list(problems), broker_restarts=lambda: 2)
    health = view.health()  # never connected: that alone degrades it
    assert health.status == "degraded" and health.broker_restarts == 2
    assert health.problems == ["not connected to the broker at mqtt://127.0.0.1:1"]
    for client in [runner.client, runner.voice, *runner.publishers]:
        client._connected.set()
    assert view.health().status == "ok" and view.health().problems == []
    problems.append("position writer: database unreachable for 12 s, 3400 positions waiting")
    health = view.health()
    assert health.status == "degraded" and health.problems == problems
