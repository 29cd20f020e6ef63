"""The reconnect policy, and run()'s reconnect loop driven by an injected clock, sleep and
jitter: nothing here waits for a real delay."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from pathlib import Path

import pytest

from gateway.broker import ManagedBroker
from transport.backoff import Backoff
from transport.client import ClientOptions, MqttClient


def test_delays_double_up_to_the_cap() -> None:
    backoff = Backoff(0.2, 3.0, lambda: 1.0)  # no jitter off the top: the nominal delays
    assert [backoff.next_delay() for _ in range(7)] == [0.2, 0.4, 0.8, 1.6, 3.0, 3.0, 3.0]


def test_jitter_keeps_each_delay_within_half_to_all_of_the_nominal_one() -> None:
    backoff = Backoff(0.5, 8.0, random.Random(7))
    nominal = 0.5
    delays = []
    for _ in range(200):
        delay = backoff.next_delay()
        assert 0.5 * nominal <= delay <= nominal
        delays.append(delay / nominal)
        nominal = min(nominal * 2, 8.0)
    assert min(delays) < 0.6 and max(delays) > 0.9, "the jitter spreads over the range"
    assert Backoff(1.0, 1.0, lambda: 0.0).next_delay() == 0.5


def test_the_same_seed_gives_the_same_delays() -> None:
    one, two = Backoff(0.2, 10.0, random.Random(3)), Backoff(0.2, 10.0, random.Random(3))
    assert [one.next_delay() for _ in range(10)] == [two.next_delay() for _ in range(10)]


def test_reset_after_a_success_starts_again_from_the_initial_delay() -> None:
    backoff = Backoff(0.2, 10.0, lambda: 1.0)
    for _ in range(5):
        backoff.next_delay()
    assert backoff.nominal == pytest.approx(6.4)
    backoff.reset()
    assert backoff.next_delay() == 0.2
    assert backoff.next_delay() == 0.4


@pytest.mark.parametrize(("initial", "maximum"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_nonsense_settings_are_refused(initial: float, maximum: float) -> None:
    with pytest.raises(ValueError):
        Backoff(initial, maximum)


def _closed_port() -> int:
    """A loopback port nothing listens on: each connect attempt is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_run_reconnects_on_the_injected_sleep_and_clock(caplog: pytest.LogCaptureFixture) -> None:
    slept: list[float] = []
    now = [100.0]
    logger = logging.getLogger("test.transport.backoff")

    async def main() -> None:
        client: MqttClient

        async def sleep(delay: float) -> None:
            slept.append(delay)
            now[0] += delay
            if len(slept) == 6:
                await client.close()  # run() returns instead of trying again
            await asyncio.sleep(0)

        options = ClientOptions(
            "127.0.0.1", _closed_port(), "probe", backoff_initial=0.5, backoff_max=4.0
        )
        client = MqttClient(
            options,
            lambda *_: None,
            logger=logger,
            clock=lambda: now[0],
            sleep=sleep,
            jitter=lambda: 0.5,  # 0.75 of each nominal delay
        )
        await asyncio.wait_for(client.run(), 10)

    with caplog.at_level(logging.DEBUG, logger=logger.name):
        asyncio.run(main())
    assert slept == [0.375, 0.75, 1.5, 3.0, 3.0, 3.0]
    attempts = [r for r in caplog.records if "reconnecting in" in r.getMessage()]
    assert [r.levelno for r in attempts] == [logging.WARNING] + [logging.DEBUG] * 5
    assert "reconnecting in 0.4 s, backing off to 4 s" in attempts[0].getMessage()


def test_run_starts_again_from_the_initial_delay_after_a_connection(tmp_path: Path) -> None:
    """Three refused attempts, the broker comes up, the connection is taken over by a second
    client with the same id: the delay before the next attempt is the initial one again."""
    port = _closed_port()
    broker = ManagedBroker(tmp_path, port=port)
    slept: list[float] = []

    async def main() -> None:
        client: MqttClient

        async def sleep(delay: float) -> None:
            slept.append(delay)
            if len(slept) == 3:
                await asyncio.to_thread(broker.start)
            if len(slept) == 4:
                await client.close()
            await asyncio.sleep(0)

        options = ClientOptions("127.0.0.1", port, "same-id", backoff_initial=0.5, backoff_max=4.0)
        client = MqttClient(options, lambda *_: None, sleep=sleep, jitter=lambda: 1.0)
        task = asyncio.create_task(client.run())
        try:
            await client.wait_connected(10)
            intruder = MqttClient(options, lambda *_: None)
            await intruder.connect()  # the broker drops the first client's connection
            for _ in range(1000):
                if task.done():
                    break
                await asyncio.sleep(0.01)
            await intruder.close()
        finally:
            await client.close()
            await asyncio.wait_for(task, 10)

    try:
        asyncio.run(main())
    finally:
        broker.stop()
    assert slept == [0.5, 1.0, 2.0, 0.5]
