"""The simulated fleet of the fault benchmark (bench/faults.py) and its device flood.

Terminals on this process's event loop (store-and-forward beacons of protocol §5.5, one talker
per grid cycling the floor), counting what the broker acknowledged and which floor events they
saw; the flood is a provisioned device publishing raw MQTT from its own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mqtt5

from devices.aio_client import AsyncTerminalClient
from devices.beacons import BeaconQueue
from devices.client import ClientError
from devices.values import Beacon
from protocol import topics
from protocol.org import default_org

FIX_PERIOD_S = 0.5


def plan_devices(count: int, prefix: str) -> list[tuple[str, str, str]]:
    grids = sorted(default_org().grids)
    return [(f"{prefix}{n + 1:04d}", grids[n % len(grids)], "officer") for n in range(count)]


# ---- the fleet -----------------------------------------------------------------------------------


class CountingQueue(BeaconQueue):
    """A BeaconQueue that remembers which fixes (ms) the broker acknowledged."""

    def __init__(self, acked_into: set[int]) -> None:
        super().__init__()
        self.acked_ts = acked_into

    def acked(self, seq: int, ok: bool = True) -> None:
        entry = self._by_seq.get(seq)
        if entry is not None and ok:
            self.acked_ts.add(entry.beacon.ts)
        super().acked(seq, ok)


@dataclass
class Terminal:
    device: str
    grid: str
    client: AsyncTerminalClient
    acked: set[int] = field(default_factory=set)
    step: int = 0
    offline: bool = False


@dataclass
class FloorStats:
    requests: int = 0
    unanswered: int = 0  # no reply within the retries (6 s), or the connection dropped
    observed: Counter[tuple[str, str, str, int | None]] = field(default_factory=Counter)
    last_seen: dict[tuple[str, str, str, int | None], float] = field(default_factory=dict)
    access: list[tuple[float, float]] = field(default_factory=list)  # (time, ms)

    def saw(self, key: tuple[str, str, str, int | None]) -> None:
        self.observed[key] += 1
        self.last_seen[key] = time.time()


class Fleet:
    """Terminals in this process's event loop: fixes every FIX_PERIOD_S, one talker per grid."""

    def __init__(self, port: int, secrets: dict[str, str], devices: list[tuple[str, str, str]],
                 talkers: int, hold_s: float = 0.8, gap_s: float = 0.7) -> None:  # fmt: skip
        self.port = port
        self.terminals: list[Terminal] = []
        for device, grid, _ in devices:
            acked: set[int] = set()
            client = AsyncTerminalClient(
                device, secrets[device], "127.0.0.1", port, beacons=CountingQueue(acked)
            )
            self.terminals.append(Terminal(device, grid, client, acked))
        seen: set[str] = set()
        self.talkers: list[Terminal] = []
        for t in self.terminals:
            if t.grid not in seen and len(self.talkers) < talkers:
                seen.add(t.grid)
                self.talkers.append(t)
        self.hold_s, self.gap_s = hold_s, gap_s
        self.floor = FloorStats()
        self.taking = False
        self.talking = False
        self._tasks: list[asyncio.Task[None]] = []
        centre = default_org().grids
        self._centres = {g: centre[g].centre for g in centre}

    def fix(self, t: Terminal, ts_ms: int) -> Beacon:
        lon, lat = self._centres[t.grid]
        t.step += 1
        jitter = int(t.device[1:]) * 2e-6
        return Beacon(ts=ts_ms, lat=round(lat + jitter + (t.step % 400) * 3e-6, 6),
                      lon=round(lon + jitter, 6), acc=5.0, spd=0.6, crs=0.0, alt=12.0, bat=80,
                      sat=9)  # fmt: skip

    async def connect(self, per_batch: int = 50, timeout: float = 60.0) -> None:
        for i in range(0, len(self.terminals), per_batch):
            for t in self.terminals[i : i + per_batch]:
                t.client.launch()
            await asyncio.sleep(0.05)
        await self.until(lambda: self.connected() == len(self.terminals), timeout, "connect")

    def connected(self) -> int:
        return sum(t.client.is_connected for t in self.terminals)

    async def until(self, cond: Callable[[], bool], timeout: float, what: str) -> float:
        began = time.monotonic()
        while not cond():
            if time.monotonic() - began > timeout:
                raise TimeoutError(f"{what}: not done after {timeout:.0f} s")
            await asyncio.sleep(0.05)
        return time.monotonic() - began

    def start_traffic(self, fixes: bool = True) -> None:
        self.taking, self.talking = fixes, True
        if fixes:
            self._tasks.append(asyncio.create_task(self._fixes()))
        for t in self.talkers:
            self._tasks.append(asyncio.create_task(self._talk(t)))

    async def _fixes(self) -> None:
        tick = time.monotonic()
        while self.taking:
            now_ms = int(time.time() * 1000)
            for t in self.terminals:
                t.client.send_beacon(self.fix(t, now_ms))
            tick += FIX_PERIOD_S
            await asyncio.sleep(max(0.0, tick - time.monotonic()))

    async def _talk(self, t: Terminal) -> None:
        rng = random.Random(t.device)
        await asyncio.sleep(rng.uniform(0, self.gap_s))
        while self.talking:
            if t.offline or not t.client.is_connected:
                await asyncio.sleep(0.1)
                continue
            began = time.monotonic()
            self.floor.requests += 1
            try:
                reply = await t.client.request_floor(tg=t.grid)
            except ClientError:
                self.floor.unanswered += 1
                await asyncio.sleep(0.2)
                continue
            if reply.get("type") == "floor_granted":
                burst = reply.get("burst")
                self.floor.access.append((time.time(), (time.monotonic() - began) * 1000))
                self.floor.saw(("floor_granted", t.grid, t.device, burst))
                await asyncio.sleep(self.hold_s)
            with contextlib.suppress(ClientError):
                if t.client.is_connected:
                    answer = await t.client.release_floor(tg=t.grid)
                    if answer.get("type") == "floor_released":
                        self.floor.saw(("floor_released", t.grid, t.device, None))
            await asyncio.sleep(self.gap_s * rng.uniform(0.7, 1.3))

    def queued(self) -> int:
        return sum(len(t.client.beacons) for t in self.terminals)

    def acked(self) -> dict[str, set[int]]:
        return {t.device: t.acked for t in self.terminals}

    async def drain_and_stop(self, timeout: float = 180.0) -> dict[str, Any]:
        """Stop taking fixes, wait until every queue is empty (all acknowledged), stop."""
        self.taking = False
        began = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await self.until(lambda: self.queued() == 0, timeout, "drain")
        left = self.queued()
        self.talking = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(t.client.stop() for t in self.terminals), return_exceptions=True)
        return {"queues_drained_s": round(time.monotonic() - began, 1), "unacked_at_end": left}


# ---- the device flood (its own process, raw MQTT) ------------------------------------------------


def flood_main(port: int, device: str, secret: str, rate: int, seconds: float, out: Any) -> None:
    """Connect as a provisioned device and publish status_msg on its ctrl/up at `rate`/s (QoS 0),
    paced in 10 ms ticks; downlink bytes are read and discarded."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(mqtt5.ConnectPacket(device, username=device, password=secret.encode(),
                                     clean_start=True, keep_alive=60).write())  # fmt: skip
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("broker closed the flooder's connection before CONNACK")
        data += chunk
        try:
            connack, _ = mqtt5.read(memoryview(data))
        except IndexError:
            continue
        break
    if getattr(connack, "reason_code", None) != mqtt5.ConnAckReasonCode.SUCCESS:
        raise RuntimeError(f"flooder refused: {connack!r}")
    payload = b'{"v":1,"type":"status_msg","id":"flood","code":"x"}'
    per_tick = max(1, rate // 100)
    packet = mqtt5.PublishPacket(topics.ctrl_up(device), payload, qos=mqtt5.QoS.AT_MOST_ONCE)
    blob = packet.write() * per_tick
    sock.setblocking(False)
    sent, began = 0, time.monotonic()
    tick = began
    while time.monotonic() - began < seconds:
        view = memoryview(blob)
        while view:
            try:
                view = view[sock.send(view) :]
            except BlockingIOError:
                time.sleep(0.0005)
        sent += per_tick
        with contextlib.suppress(BlockingIOError):
            sock.recv(1 << 16)
        tick += 0.01
        time.sleep(max(0.0, tick - time.monotonic()))
    elapsed = time.monotonic() - began
    sock.setblocking(True)
    sock.sendall(mqtt5.DisconnectPacket().write())
    sock.close()
    out.put({"flood_sent": sent, "flood_s": round(elapsed, 2), "flood_rate": round(sent / elapsed)})
