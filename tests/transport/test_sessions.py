"""Persistent sessions and application acks against a real mosquitto: what the application did
not acknowledge is resent after a reconnect, and what was published while it was away waits."""

from __future__ import annotations

import asyncio
import dataclasses

from gateway.broker import ManagedBroker
from transport.client import ClientOptions, MqttClient


def _session(broker: ManagedBroker) -> ClientOptions:
    options = broker.address.client_options("ingest-1", subscriptions=[("s/#", 1)])
    return dataclasses.replace(options, clean_start=False, session_expiry_s=300, manual_ack=True)


def test_unacknowledged_messages_come_back_and_queued_ones_wait(mosquitto: ManagedBroker) -> None:
    async def main() -> None:
        got: asyncio.Queue[tuple[bytes, int | None]] = asyncio.Queue()
        first = MqttClient(_session(mosquitto), lambda t, p, q: None)
        first.on_message = lambda t, p, q: got.put_nowait((p, first.current_packet_id))
        publisher = MqttClient(mosquitto.address.client_options("pub"), lambda *_: None)
        async with publisher, first:
            for n in range(10):
                await publisher.publish("s/x", b"%d" % n, qos=1)
            received = [await asyncio.wait_for(got.get(), 10) for _ in range(10)]
            assert [p for p, _ in received] == [b"%d" % n for n in range(10)]
            # Keep (acknowledge) the first five only, then vanish without a DISCONNECT.
            ids = [pid for _, pid in received[:5] if pid is not None]
            assert first.ack(first.epoch, ids) == 5
            assert first.ack(first.epoch - 1, ids) == 0  # another connection's: dropped
            await publisher.publish("s/x", b"sync", qos=1)  # the acks reach the broker first
            assert (await asyncio.wait_for(got.get(), 10))[0] == b"sync"
            first.abort()
            for n in range(10, 13):  # while it is away
                await publisher.publish("s/x", b"%d" % n, qos=1)

        again: asyncio.Queue[bytes] = asyncio.Queue()
        second = MqttClient(_session(mosquitto), lambda t, p, q: again.put_nowait(p))
        async with second:
            assert second.session_present
            back = [await asyncio.wait_for(again.get(), 10) for _ in range(9)]
        assert sorted(back) == sorted([b"%d" % n for n in range(5, 13)] + [b"sync"])

    asyncio.run(main())


def test_automatic_acks_are_unchanged_without_manual_ack(mosquitto: ManagedBroker) -> None:
    async def main() -> None:
        got: asyncio.Queue[bytes] = asyncio.Queue()
        options = dataclasses.replace(_session(mosquitto), manual_ack=False)
        client = MqttClient(options, lambda t, p, q: got.put_nowait(p))
        publisher = MqttClient(mosquitto.address.client_options("pub"), lambda *_: None)
        async with publisher, client:
            await publisher.publish("s/x", b"a", qos=1)
            assert await asyncio.wait_for(got.get(), 10) == b"a"
            assert client.current_packet_id is None
            client.abort()
        again: asyncio.Queue[bytes] = asyncio.Queue()
        second = MqttClient(options, lambda t, p, q: again.put_nowait(p))
        publisher = MqttClient(mosquitto.address.client_options("pub"), lambda *_: None)
        async with publisher, second:
            await publisher.publish("s/x", b"b", qos=1)
            assert await asyncio.wait_for(again.get(), 10) == b"b"  # not "a": it was acked

    asyncio.run(main())
