"""A device flooding `ctrl/up` through the real broker cannot starve another device (item 7)."""

from __future__ import annotations

import asyncio
import threading
import time

from gateway.broker import ManagedBroker
from protocol import topics
from protocol.limits import CONTROL_BURST, CONTROL_RATE
from tests.gateway.conftest import GatewayFactory, TerminalFactory
from transport.client import MqttClient

TG = "grid-01"
FLOOD_MIN = 5_000  # messages the flooder sends at least
FLOOD_RATE = 10_000.0  # messages per second: the reported flood, 500 times the budget
CHUNK = 100
MESSAGE = b'{"v":1,"type":"status_msg","id":"f","code":"x"}'  # answered when handled


class Flooder:
    """T003 publishing `status_msg` to its `ctrl/up` at FLOOD_RATE (QoS 0 in chunks, each
    closed by one QoS 1 publish whose PUBACK it waits for) until stopped, and at least
    FLOOD_MIN of them. Paced: a device flooding faster than the gateway can even refuse, on
    a machine shared with the broker, would overflow the broker's queue towards the gateway
    (where the broker drops, uncounted by the gateway); the reported flood was 10,000/s."""

    def __init__(self, broker: ManagedBroker) -> None:
        self.options = broker.address.client_options("T003-flood")
        self.sent = 0
        self.started = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="flooder", daemon=True)

    def __enter__(self) -> Flooder:
        self._thread.start()
        assert self.started.wait(10), "flooder did not connect"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "flooder did not stop"
        assert self.error is None, self.error

    def _main(self) -> None:
        try:
            asyncio.run(self._flood())
        except BaseException as exc:
            self.error = exc
            self.started.set()

    async def _flood(self) -> None:
        topic = topics.device("T003", "ctrl/up")
        loop = asyncio.get_running_loop()
        async with MqttClient(self.options, lambda *_: None) as client:
            self.started.set()
            due = loop.time()
            while self.sent < FLOOD_MIN or not self.stop.is_set():
                due += CHUNK / FLOOD_RATE
                await asyncio.sleep(max(0.0, due - loop.time()))  # the flood's pace
                for _ in range(CHUNK - 1):
                    client.publish_nowait(topic, MESSAGE)
                await client.publish(topic, MESSAGE)
                self.sent += CHUNK


def test_a_flooding_device_cannot_starve_another(
    start_gateway: GatewayFactory, terminal: TerminalFactory, mosquitto: ManagedBroker
) -> None:
    """T003 floods while T001 takes and releases the floor 8 times: every one of T001's
    requests is answered, every flooded message reaches the gateway and is counted, and the
    flood is refused `rate_limited` past T003's budget (§5.1)."""
    gw = start_gateway()
    a = terminal("T001", [TG])
    counters = gw.runner.counters
    before = gw.call(lambda: counters.control_in)
    started = time.monotonic()
    answers: list[str] = []
    with Flooder(mosquitto) as flooder:
        for _ in range(8):
            answers.append(a.request_floor(tg=TG)["type"])
            answers.append(a.release_floor(tg=TG)["type"])
        sent_meanwhile = flooder.sent
    assert answers == ["floor_granted", "floor_released"] * 8
    expected = before + flooder.sent + len(answers)
    deadline = time.monotonic() + 30
    while gw.call(lambda: counters.control_in) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    assert gw.call(lambda: counters.control_in) == expected, "a flooded message vanished"
    refused = gw.call(lambda: counters.rejected.get("rate_limited", 0))
    print(
        f"flood: T003 sent {flooder.sent} ({sent_meanwhile} while T001 asked), "
        f"{refused} refused rate_limited; T001 answered {len(answers)} of 16 in {elapsed:.2f} s"
    )
    assert sent_meanwhile > 0
    handled = flooder.sent - refused
    assert 0 < handled <= CONTROL_BURST + CONTROL_RATE * elapsed
