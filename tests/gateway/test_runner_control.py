"""The runner keeps voice and control apart: control messages are queued by the control
connection's reader and handled in slices (in order), voice is relayed from its own connection
whatever the control side is doing, and a control backlog stops the control connection's reads
until it drains."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from gateway.broker import ManagedBroker
from gateway.runner import GatewayRunner, GatewaySettings
from tests.gateway.conftest import GatewayFactory, TerminalFactory, make_directory
from tests.gateway.test_gateway_e2e import collect, frames
from transport.address import BrokerAddress

TG = "grid-01"


def control(runner: GatewayRunner, device: str, **body: Any) -> None:
    """As the control connection's reader hands a message over."""
    payload = json.dumps({"v": 1, **body}).encode()
    runner._on_control_message(f"xixin/v1/dev/{device}/ctrl/up", payload, 1)


def test_control_messages_are_handled_in_slices_in_order() -> None:
    runner = GatewayRunner(GatewaySettings(BrokerAddress("127.0.0.1", 1)), make_directory())
    control(runner, "T001", type="floor_request", id="a", tg=TG)
    control(runner, "T002", type="floor_request", id="b", tg=TG)
    control(runner, "T001", type="floor_release", id="c", tg=TG)
    control(runner, "T002", type="floor_release", id="d", tg=TG)
    floor = runner.control.floors[TG]
    assert floor.holder is None and len(runner.control_queue) == 3 + 1

    assert runner.handle_control(budget_s=0) == 1  # a slice that is over at once: one message
    assert floor.holder == "T001" and len(runner.control_queue) == 3
    assert runner.handle_control(budget_s=0) == 1
    assert [device for device, _ in floor.queue()] == ["T002"]
    assert runner.handle_control(budget_s=60) == 2  # the rest, in the order they came
    assert floor.holder is None and not runner.control_queue
    assert runner.counters.floor["grant"] == 2


def test_a_bad_control_message_is_counted_and_the_slice_goes_on() -> None:
    runner = GatewayRunner(GatewaySettings(BrokerAddress("127.0.0.1", 1)), make_directory())
    runner._on_control_message("xixin/v1/dev/T001/ctrl/up", b"{not json", 1)
    runner._on_control_message("xixin/v1/nothing", b"", 1)
    control(runner, "T001", type="floor_request", id="a", tg=TG)
    assert runner.handle_control(budget_s=60) == 3
    assert runner.control.floors[TG].holder == "T001"
    assert runner.counters.rejected.get("bad_topic") == 1


def test_voice_is_relayed_while_the_control_connection_is_not_read(
    start_gateway: GatewayFactory, terminal: TerminalFactory
) -> None:
    gw = start_gateway()
    a, b = terminal("T001", [TG]), terminal("T002", [TG])
    burst = a.request_floor(tg=TG)["burst"]
    assert gw.call(lambda: gw.runner.client.pause_reading())
    for frame in frames(burst, 25):
        a.send_frame(frame, tg=TG)
    assert [r.frame.seq for r in collect(b, 25)] == list(range(25))
    gw.call(lambda: gw.runner.client.resume_reading())
    assert a.release_floor(tg=TG)["type"] == "floor_released"  # control reads again


def test_a_control_backlog_pauses_the_control_connection_until_it_drains(
    mosquitto: ManagedBroker,
) -> None:
    async def main() -> None:
        settings = GatewaySettings(mosquitto.local_address, publish_connections=0)
        runner = GatewayRunner(settings, make_directory())
        runner.control_queue_pause, runner.control_queue_resume = 10, 4
        async with runner.client:
            for k in range(9):
                control(runner, "T001", type="status_msg", id=f"s{k}", code="c1", text="x")
            assert not runner.control_paused and runner.client.is_reading
            control(runner, "T001", type="status_msg", id="s9", code="c1", text="x")
            assert runner.control_paused and not runner.client.is_reading
            assert runner.handle_control(budget_s=0) == 1
            assert runner.control_paused, "9 still waiting: above the resume mark"
            while runner.control_queue:
                runner.handle_control(budget_s=0)
                assert runner.control_paused == (len(runner.control_queue) > 4)
            assert runner.client.is_reading

    asyncio.run(main())
