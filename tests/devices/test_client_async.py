"""The asyncio client against a real mosquitto and gateway, including a broker restart."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from codec.frame import VoiceFrame
from devices.aio_client import AsyncTerminalClient
from devices.beacons import BeaconJournal, BeaconQueue
from devices.session import Beacon
from gateway.broker import ManagedBroker
from gateway.directory import build_directory
from gateway.runner import GatewayRunner, GatewaySettings
from protocol.org import default_org
from tests.gateway.harness import GatewayThread
from transport.client import ClientOptions, MqttClient

DEVICES = [(f"T00{n}", "grid-01", "officer", True) for n in range(1, 4)]
TG = "grid-01"


def gateway(broker: ManagedBroker) -> GatewayThread:
    settings = GatewaySettings(broker=broker.address)
    return GatewayThread(GatewayRunner(settings, build_directory(default_org(), DEVICES))).start()


def voice(burst: int, seq: int) -> VoiceFrame:
    return VoiceFrame(
        burst=burst, seq=seq, timestamp=seq * 960, frame_ms=20, packets=(bytes([seq]) * 40,)
    )


def test_talk_and_listen(mosquitto: ManagedBroker) -> None:
    gw = gateway(mosquitto)

    async def main() -> None:
        a = AsyncTerminalClient("T001", None, mosquitto.host, mosquitto.port)
        b = AsyncTerminalClient("T002", None, mosquitto.host, mosquitto.port)
        await a.start()
        await b.start()
        try:
            assert (await a.affiliate([TG, "grid-09"]))["rejected"] == ["grid-09"]
            assert a.wanted_tgs == [TG]
            await b.affiliate([TG])
            granted = await a.request_floor(tg=TG)
            assert granted["type"] == "floor_granted"
            taken = await b.wait_control("floor_taken", tg=TG)
            assert taken["by"] == "T001"
            start = asyncio.get_running_loop().time()
            sent = await a.send_burst([voice(granted["burst"], s) for s in range(10)], tg=TG)
            assert sent == 10 and asyncio.get_running_loop().time() - start >= 0.19
            heard = [await asyncio.wait_for(b.frames.get(), 3.0) for _ in range(10)]
            assert [f.frame.seq for f in heard] == list(range(10))
            await asyncio.sleep(0.1)
            assert a.frames.empty() and a.session.counters.own_echo == 10
            queued = await b.request_floor(tg=TG)
            assert queued["type"] == "floor_queued" and queued["position"] == 1
            assert (await a.release_floor(tg=TG))["type"] == "floor_released"
            await b.wait_control("floor_granted", tg=TG)
            assert b.session.floor(TG).state == "granted"
        finally:
            await a.stop()
            await b.stop()

    try:
        asyncio.run(main())
    finally:
        gw.stop()


class GpsChecker:
    """The gateway's account's view: every beacon that reaches subscribers, in arrival order."""

    def __init__(self, broker: ManagedBroker) -> None:
        self.seen: dict[str, list[int]] = {}
        self.subscribed_at: list[float] = []
        self.client = MqttClient(
            ClientOptions(
                broker.host,
                broker.port,
                "gps-checker",
                backoff_initial=0.02,
                backoff_max=0.05,
            ),
            self._on_message,
            on_connect=self._on_connect,
        )

    async def _on_connect(self) -> None:
        await self.client.subscribe([("xixin/v1/dev/+/gps", 1)])
        self.subscribed_at.append(asyncio.get_running_loop().time())

    def _on_message(self, topic: str, payload: bytes, qos: int) -> None:
        device = topic.split("/")[3]
        self.seen.setdefault(device, []).append(json.loads(payload)["ts"])


def test_store_and_forward_across_a_real_broker_restart(
    mosquitto: ManagedBroker, tmp_path: Path
) -> None:
    """Beacons taken while the broker is down are sent in order afterwards; none is lost."""
    gw = gateway(mosquitto)
    acked_at: dict[str, dict[int, float]] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        checker = GpsChecker(mosquitto)
        checker_task = asyncio.create_task(checker.client.run())
        terminals = []
        for device, *_ in DEVICES:
            queue = BeaconQueue(journal=BeaconJournal(tmp_path / f"{device}.jsonl"))
            client = AsyncTerminalClient(
                device, None, mosquitto.host, mosquitto.port, beacons=queue, backoff_max=0.5
            )
            await client.start()
            await client.affiliate([TG])
            terminals.append(client)
        await checker.client.wait_connected(5)
        taken: dict[str, list[int]] = {t.device_id: [] for t in terminals}

        def record_acks(client: AsyncTerminalClient) -> None:
            # Remember when each beacon was acknowledged (to compare with the checker's view).
            original = client.beacons.acked

            def acked(seq: int, ok: bool = True) -> None:
                for entry in client.beacons._queue:
                    if entry.seq == seq:
                        acked_at.setdefault(client.device_id, {})[entry.beacon.ts] = loop.time()
                original(seq, ok)

            client.beacons.acked = acked  # type: ignore[method-assign]

        for client in terminals:
            record_acks(client)

        async def patrol(seconds: float) -> None:
            end = loop.time() + seconds
            while loop.time() < end:
                for client in terminals:
                    ts = 1_700_000_000_000 + len(taken[client.device_id])
                    taken[client.device_id].append(ts)
                    client.send_beacon(Beacon(ts=ts, lat=30.87, lon=120.13))
                await asyncio.sleep(0.05)

        await patrol(0.5)
        mosquitto.stop()
        await patrol(1.0)  # the broker is down: these are stored (and journaled)
        offline = [len(t.beacons) for t in terminals]
        assert all(n >= 15 for n in offline), offline
        assert all((tmp_path / f"{t.device_id}.jsonl").exists() for t in terminals)
        mosquitto.start()
        await patrol(1.0)
        for _ in range(100):
            if all(not len(t.beacons) for t in terminals):
                break
            await asyncio.sleep(0.05)
        # After the restart the gateway and the terminals are back: the floor works again.
        await gw_ready(terminals[0])
        for client in terminals:
            counters = client.beacons.counters
            assert counters.taken == len(taken[client.device_id])
            assert counters.acked == counters.taken, "every beacon acknowledged"
            assert counters.overflowed == counters.refused == 0
            assert not (tmp_path / f"{client.device_id}.jsonl").exists()
        resubscribed = checker.subscribed_at[-1]
        for client in terminals:
            seen = checker.seen[client.device_id]
            assert seen == sorted(seen), "in order (QoS 1 may repeat one)"
            after = [
                ts for ts, at in acked_at[client.device_id].items() if at > resubscribed + 0.05
            ]
            assert set(after) <= set(seen), "every beacon acked after resubscribing was delivered"
            assert len(after) >= 10
        for client in terminals:
            await client.stop()
        await checker.client.close()
        checker_task.cancel()

    async def gw_ready(client: AsyncTerminalClient) -> None:
        for _ in range(100):
            try:
                reply = await client.request_floor(tg=TG)
            except Exception:
                await asyncio.sleep(0.1)
                continue
            assert reply["type"] == "floor_granted"
            await client.release_floor(tg=TG)
            return
        raise AssertionError("the floor did not work after the broker restart")

    try:
        asyncio.run(main())
    finally:
        gw.stop()


def test_wrong_secret_is_refused(tmp_path: Path) -> None:
    from devices.client import ConnectFailedError

    broker_dir = tmp_path / "auth"
    broker_dir.mkdir()
    from gateway.credentials import hash_secret

    passwd = broker_dir / "passwd"
    passwd.write_text(f"T001:{hash_secret('right')}\n")
    passwd.chmod(0o600)
    broker = ManagedBroker(broker_dir / "broker", password_file=passwd)
    broker.start()

    async def main() -> None:
        good = AsyncTerminalClient("T001", "right", broker.host, broker.port)
        await good.start()
        await good.stop()
        bad = AsyncTerminalClient("T001", "wrong", broker.host, broker.port)
        try:
            await bad.start(timeout=5)
        except ConnectFailedError as exc:
            assert "BAD_USER_NAME_OR_PASSWORD" in str(exc) or "NOT_AUTHORIZED" in str(exc)
        else:
            raise AssertionError("a wrong secret must be refused")

    try:
        asyncio.run(main())
    finally:
        broker.stop()


def test_reaffiliates_when_a_gateway_comes_back(mosquitto: ManagedBroker) -> None:
    """Gateway state lives in memory: a restarted gateway learns affiliations again (§2)."""
    first = gateway(mosquitto)

    async def main() -> None:
        a = AsyncTerminalClient("T001", None, mosquitto.host, mosquitto.port)
        await a.start()
        await a.affiliate([TG])
        assert first.call(lambda: first.runner.control.affiliations.get("T001")) == {TG}
        first.stop()
        second = await asyncio.to_thread(gateway, mosquitto)
        try:
            for _ in range(100):
                known = second.call(lambda: second.runner.control.affiliations.get("T001"))
                if known == {TG}:
                    break
                await asyncio.sleep(0.05)
            assert known == {TG}, "the terminal affiliated again by itself"
            assert (await a.request_floor(tg=TG))["type"] == "floor_granted"
        finally:
            await a.stop()
            second.stop()

    asyncio.run(main())
