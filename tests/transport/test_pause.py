"""pause_reading()/resume_reading() against a real mosquitto: while paused nothing is handed to
the handler (the bytes wait in the socket); resumed, everything arrives, in order."""

from __future__ import annotations

import asyncio

from gateway.broker import ManagedBroker
from transport.client import MqttClient


def test_paused_client_gets_nothing_until_resumed(mosquitto: ManagedBroker) -> None:
    async def main() -> None:
        paused_got: list[bytes] = []
        witness_got: asyncio.Queue[bytes] = asyncio.Queue()
        subs = [("pause/#", 1)]
        paused = MqttClient(
            mosquitto.address.client_options("paused", subscriptions=subs),
            lambda t, p, q: paused_got.append(p),
        )
        witness = MqttClient(
            mosquitto.address.client_options("witness", subscriptions=subs),
            lambda t, p, q: witness_got.put_nowait(p),
        )
        sender = MqttClient(mosquitto.address.client_options("sender"), lambda *_: None)
        async with paused, witness, sender:
            assert paused.is_reading
            assert paused.pause_reading() and not paused.is_reading
            for k in range(3):
                await sender.publish("pause/x", bytes([k]), qos=1)
            # The broker writes every subscriber's copy in the same turn: once the witness has
            # all three, so has the paused client's socket, and our loop has run meanwhile.
            assert [await asyncio.wait_for(witness_got.get(), 10) for _ in range(3)] == [
                b"\x00",
                b"\x01",
                b"\x02",
            ]
            await asyncio.sleep(0)
            assert paused_got == []
            paused.resume_reading()
            assert paused.is_reading
            async with asyncio.timeout(10):
                while len(paused_got) < 3:
                    await asyncio.sleep(0.01)
            assert paused_got == [b"\x00", b"\x01", b"\x02"]
            paused.resume_reading()  # reading already: nothing happens
            assert paused.is_reading
        assert not paused.pause_reading(), "no connection: nothing to pause"

    asyncio.run(main())
