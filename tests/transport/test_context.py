"""`async with MqttClient(...)` against a real mosquitto: connected inside the block, closed
and its run() task ended after it, and a refusal raised on entry instead of a hang."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from gateway.broker import ManagedBroker
from gateway.broker_auth import write_password_file
from gateway.credentials import hash_secret
from transport.client import ClientOptions, MqttClient
from transport.errors import ConnectRefusedError

NOT_AUTHORIZED = 135
BAD_USER_OR_PASSWORD = 134  # mosquitto 2.0.11 answers 135, later releases 134


def test_publish_to_itself_and_receive_inside_the_block(mosquitto: ManagedBroker) -> None:
    async def main() -> None:
        got: asyncio.Queue[tuple[str, bytes, int]] = asyncio.Queue()
        options = mosquitto.address.client_options("ctx", subscriptions=[("ctx/#", 1)])
        client = MqttClient(options, lambda t, p, q: got.put_nowait((t, p, q)))
        async with client as entered:
            assert entered is client and client.is_connected
            await client.publish("ctx/a", b"hello", qos=1)
            assert await asyncio.wait_for(got.get(), 10) == ("ctx/a", b"hello", 1)
            assert len(asyncio.all_tasks()) == 2, "this one and run()"
        assert not client.is_connected and not client.is_open
        assert asyncio.all_tasks() == {asyncio.current_task()}, "nothing left running"
        with pytest.raises(RuntimeError):
            await client.__aenter__()  # closed for good

    asyncio.run(main())


def test_an_exception_in_the_block_still_closes_and_propagates(mosquitto: ManagedBroker) -> None:
    async def main() -> MqttClient:
        client = MqttClient(mosquitto.address.client_options("ctx"), lambda *_: None)
        with pytest.raises(KeyError):
            async with client:
                raise KeyError("in the block")
        assert asyncio.all_tasks() == {asyncio.current_task()}
        return client

    assert not asyncio.run(main()).is_connected


def test_a_refused_login_raises_on_entry(tmp_path: Path) -> None:
    password_file = tmp_path / "passwd"
    write_password_file(password_file, [("T1", hash_secret("right", iterations=1000))])
    broker = ManagedBroker(tmp_path / "broker", password_file=password_file)
    broker.start()

    async def main() -> None:
        options = broker.address.client_options("T1", username="T1", password="wrong")
        with pytest.raises(ConnectRefusedError) as refused:
            async with asyncio.timeout(10), MqttClient(options, lambda *_: None):
                pytest.fail("entered the block without a connection")
        assert int(refused.value.reason) in {NOT_AUTHORIZED, BAD_USER_OR_PASSWORD}
        assert asyncio.all_tasks() == {asyncio.current_task()}

        right = broker.address.client_options("T1", username="T1", password="right")
        async with MqttClient(right, lambda *_: None) as client:
            assert client.is_connected

    try:
        asyncio.run(main())
    finally:
        broker.stop()


def test_a_timeout_while_the_broker_is_unreachable_stops_the_retrying() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])  # nothing listens here

    async def main() -> None:
        options = ClientOptions("127.0.0.1", port, "ctx", backoff_initial=0.01, backoff_max=0.02)
        client = MqttClient(options, lambda *_: None)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3), client:
                pytest.fail("entered the block without a broker")
        assert asyncio.all_tasks() == {asyncio.current_task()}, "the run() task ended"

    asyncio.run(main())
