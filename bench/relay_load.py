"""The relay benchmark's parts: the gateway under test (its own process) and the terminals.

Every terminal has its own connection, as in the field: talker i publishes on talkgroup i and
reads its own control downlink, listener i reads talkgroup i's downlink, storm device k only
asks for (and releases) the floor of a talkgroup of its own. See bench/relay.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import mqtt5

from codec.frame import FLAG_START, VoiceFrame, encode_frame
from gateway.relay import publish_head
from protocol import topics
from transport.address import BrokerAddress
from transport.client import ClientOptions, MqttClient
from transport.loop import freeze_startup_heap, run_event_loop

FRAME_MS = 20
PAYLOAD_BYTES = 80
SUB_TICKS = 10  # bursts are spread over the 20 ms period, as real talkers are not in phase
OPUS_TOC = b"\x48"  # SILK wideband, 20 ms, mono, one frame: a packet the recorder accepts
PATHS = ("direct", "gateway")

# Frame header + packet length + TOC + send time: the part of a bench frame that changes.
FRAME_HEAD = struct.Struct(">BBHHIBBHBQ")
SENT_AT = slice(FRAME_HEAD.size - 8, FRAME_HEAD.size)  # offset of the send time in a frame
PATH_AT = FRAME_HEAD.size  # first filler byte: which path the frame was sent on


def tg_of(i: int) -> str:
    return f"bench-{i:04d}"


def dev_of(i: int) -> str:
    return f"B{i:04d}"


def storm_tg(k: int) -> str:
    return f"storm-{k:04d}"


def storm_dev(k: int) -> str:
    return f"S{k:04d}"


def _check_packet_layout(prefix: bytes, topic: str, filler: bytes) -> None:
    """The hand-built packet must be exactly what the codec and mqtt5 would encode."""
    packet = OPUS_TOC + (123).to_bytes(8, "big") + filler
    frame = encode_frame(VoiceFrame(7, 5, 4800, FRAME_MS, (packet,), start=True))
    expected = mqtt5.PublishPacket(topic, frame).write()
    built = prefix + FRAME_HEAD.pack(1, FLAG_START, 7, 5, 4800, 8, 1, PAYLOAD_BYTES, 0x48, 123)
    if built + filler != expected:
        raise AssertionError("bench frame layout differs from codec.frame/mqtt5 encoding")


# ---- the gateway under test, in its own process ----------------------------------------------


def serve_gateway(host: str, port: int, bursts: int, storm: int, options: dict[str, Any]) -> None:
    """`host` is a path when the gateway reaches the broker over its Unix socket; `options`
    are GatewaySettings fields, plus "record" (default True)."""
    from gateway.directory import DeviceInfo, Directory
    from gateway.recorder_process import RecorderLink
    from gateway.runner import GatewayRunner, GatewaySettings

    record = bool(options.pop("record", True))
    devices = [
        DeviceInfo(dev_of(i), tg_of(i), "officer", True, frozenset({tg_of(i)}))
        for i in range(bursts)
    ] + [
        DeviceInfo(storm_dev(k), storm_tg(k), "officer", True, frozenset({storm_tg(k)}))
        for k in range(storm)
    ]
    groups = [tg_of(i) for i in range(bursts)] + [storm_tg(k) for k in range(storm)]
    directory = Directory.build(devices, {tg: tg for tg in groups})

    async def main() -> None:
        unix = host if host.startswith("/") else None
        address = BrokerAddress("127.0.0.1" if unix else host, port, unix_path=unix)
        runner = GatewayRunner(GatewaySettings(address, **options), directory)
        # As in production, every relayed burst is also recorded (recorder process, files only).
        with tempfile.TemporaryDirectory() as recordings:
            recorder = RecorderLink(Path(recordings), None)
            if record:
                runner.relay.tap = recorder.tap
                recorder.start()
            task = asyncio.create_task(runner.run())
            await runner.ready.wait()
            freeze_startup_heap()  # as `xixin up` does once it has started
            pid = recorder.pid if record else None
            print(f"ready {pid or 0}", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            runner.stop()
            await task
            recorder.stop()
            files = sum(1 for _ in Path(recordings).rglob("*.opus"))
            counters = runner.counters
            print(
                f"recorded {files} bursts, {recorder.dropped} frames dropped; relayed "
                f"{counters.relayed} frames, dropped {dict(counters.dropped)}",
                flush=True,
            )

    run_event_loop(main())


# ---- the terminals -------------------------------------------------------------------------


class Stream:
    """One path's bursts, with their PUBLISH packets pre-encoded up to the frame header.

    Frames are written straight into these packets (the same bytes encode_frame and mqtt5
    produce, checked here): the load generator shares the two cores with what it measures,
    so it must stay cheap.
    """

    def __init__(
        self,
        path: int,
        up_topics: list[str],
        burst_ids: list[int],
        senders: Sequence[Callable[[bytes], None]],
    ) -> None:
        self.path = path
        self.burst_ids = burst_ids
        self.senders = senders
        self.filler = bytes([path]) + bytes(PAYLOAD_BYTES - 10)
        frame_size = FRAME_HEAD.size + len(self.filler)
        self.prefixes = [publish_head(topic, frame_size) for topic in up_topics]
        _check_packet_layout(self.prefixes[0], up_topics[0], self.filler)
        self.next_seq = 0


def _client(address: BrokerAddress, client_id: str, subs: list[tuple[str, int]],
            handler: Callable[[str, bytes, int], None]) -> MqttClient:  # fmt: skip
    return MqttClient(
        ClientOptions(address.host, address.port, client_id, subscriptions=subs), handler
    )


class Fleet:
    """Talkers and listeners, each on its own connection."""

    def __init__(self, address: BrokerAddress, bursts: int) -> None:
        self.address = address
        self.grants: dict[str, int] = {}
        self.grant_event = asyncio.Event()
        self.expected_grants = 0
        self.recording = False
        self.latencies: tuple[list[float], list[float]] = ([], [])
        # (path, sent ns, received ns) of every frame, when set (--dump)
        self.timeline: list[tuple[int, int, int]] | None = None
        self.talkers = [
            _client(address, f"bench-tx-{i}", [(topics.ctrl_down(dev_of(i)), 1)], self._on_ctrl)
            for i in range(bursts)
        ]
        self.listeners = [
            _client(address, f"bench-rx-{i}", [(topics.tg_down(tg_of(i)), 0)], self._on_voice)
            for i in range(bursts)
        ]
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def clients(self) -> list[MqttClient]:
        return [*self.talkers, *self.listeners]

    def _on_voice(self, topic: str, payload: bytes, qos: int) -> None:
        if self.recording:
            now_ns = time.monotonic_ns()
            sent_ns = int.from_bytes(payload[SENT_AT], "big")
            self.latencies[payload[PATH_AT]].append((now_ns - sent_ns) / 1e6)
            if self.timeline is not None:
                self.timeline.append((payload[PATH_AT], sent_ns, now_ns))

    def _on_ctrl(self, topic: str, payload: bytes, qos: int) -> None:
        body = json.loads(payload)
        if body.get("type") == "floor_granted":
            self.grants[topic.split("/")[3]] = int(body["burst"])
            if len(self.grants) >= self.expected_grants:
                self.grant_event.set()

    async def __aenter__(self) -> Fleet:
        clients = self.clients
        self._tasks = [asyncio.create_task(c.run()) for c in clients]
        for k in range(0, len(clients), 100):
            await asyncio.gather(*(c.wait_connected(30) for c in clients[k : k + 100]))
        await asyncio.sleep(0.5)  # subscriptions in place
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(client.close() for client in self.clients))
        for task in self._tasks:
            task.cancel()

    async def request_floors(self, bursts: int) -> None:
        self.grants.clear()
        self.grant_event.clear()
        self.expected_grants = bursts
        for i in range(bursts):
            body = {"v": 1, "type": "floor_request", "id": f"b{i}", "tg": tg_of(i)}
            self.talkers[i].publish_nowait(
                topics.ctrl_up(dev_of(i)), json.dumps(body).encode(), qos=1
            )
        await asyncio.wait_for(self.grant_event.wait(), 30)
        # The grants' control traffic (floor_taken broadcasts, acks, events) settles first.
        await asyncio.sleep(0.5)

    async def release_floors(self, bursts: int) -> None:
        """Fresh floors for the next step (max talk burst is 30 s)."""
        for i in range(bursts):
            body = {"v": 1, "type": "floor_release", "id": f"r{i}", "tg": tg_of(i)}
            self.talkers[i].publish_nowait(
                topics.ctrl_up(dev_of(i)), json.dumps(body).encode(), qos=1
            )
        await asyncio.sleep(0.5)

    def stream(self, bursts: int, via_gateway: bool) -> Stream:
        if via_gateway:
            up = [topics.tg_up(tg_of(i), dev_of(i)) for i in range(bursts)]
            burst_ids = [self.grants[dev_of(i)] for i in range(bursts)]
        else:
            up = [topics.tg_down(tg_of(i)) for i in range(bursts)]
            burst_ids = [1] * bursts
        senders = [self.talkers[i].publish_raw for i in range(bursts)]
        return Stream(1 if via_gateway else 0, up, burst_ids, senders)

    async def play(self, stream: Stream, seconds: float, tail_s: float) -> tuple[int, list[float]]:
        """Send `seconds` of every burst of `stream` (continuing its sequence numbers), then
        wait for the frames in flight (up to `tail_s` without progress); (sent, latencies)."""
        bursts = len(stream.prefixes)
        groups = [list(range(g, bursts, SUB_TICKS)) for g in range(SUB_TICKS)]
        prefixes, burst_ids, senders = stream.prefixes, stream.burst_ids, stream.senders
        filler = stream.filler
        got = self.latencies[stream.path]
        got.clear()
        self.recording = True
        sent = 0
        ticks = int(seconds * 1000 / FRAME_MS) * SUB_TICKS
        pack_head, now_ns = FRAME_HEAD.pack, time.monotonic_ns
        first_seq = stream.next_seq
        start = time.monotonic()
        for tick in range(ticks):
            seq = first_seq + tick // SUB_TICKS
            flags = FLAG_START if seq == 0 else 0
            wire_seq, timestamp = seq & 0xFFFF, (seq * 960) & 0xFFFFFFFF
            for i in groups[tick % SUB_TICKS]:
                head = pack_head(
                    1, flags, burst_ids[i], wire_seq, timestamp, 8, 1, PAYLOAD_BYTES, 0x48, now_ns()
                )
                senders[i](prefixes[i] + head + filler)
                sent += 1
            delay = start + (tick + 1) * FRAME_MS / 1000 / SUB_TICKS - time.monotonic()
            await asyncio.sleep(max(0.0, delay))
        stream.next_seq = first_seq + ticks // SUB_TICKS
        seen, quiet_since = -1, time.monotonic()
        while len(got) < sent and time.monotonic() - quiet_since < tail_s:
            if len(got) != seen:
                seen, quiet_since = len(got), time.monotonic()
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.05)
        self.recording = False
        return sent, list(got)


# ---- the storm, in its own process --------------------------------------------------------


async def _storm(clients: list[MqttClient], stop: asyncio.Event, times: list[int]) -> int:
    """Every second each storm device asks for its talkgroup's floor (all in the same instant:
    a storm) and releases it 0.5 s later, until `stop`; returns how many requests were sent."""
    sent, n = 0, 0
    while not stop.is_set():
        began = time.monotonic()
        times.append(time.monotonic_ns())
        for k, client in enumerate(clients):
            body = {"v": 1, "type": "floor_request", "id": f"s{n}", "tg": storm_tg(k)}
            client.publish_nowait(topics.ctrl_up(storm_dev(k)), json.dumps(body).encode(), 1)
        sent += len(clients)
        await _sleep_until(began + 0.5, stop)
        for k, client in enumerate(clients):
            body = {"v": 1, "type": "floor_release", "id": f"r{n}", "tg": storm_tg(k)}
            client.publish_nowait(topics.ctrl_up(storm_dev(k)), json.dumps(body).encode(), 1)
        n += 1
        await _sleep_until(began + 1.0, stop)
    return sent


def _ignore(topic: str, payload: bytes, qos: int) -> None:
    """Storm devices do not look at the replies."""


def serve_storm(host: str, port: int, rate: int) -> None:
    """`rate` storm devices on their own connections, in a process of their own (the talkers'
    timing is not disturbed by the storm's own work). Commands on stdin: `start`, `stop` (then
    prints JSON: requests sent and each storm's monotonic ns); EOF ends."""

    address = BrokerAddress(host, port)

    async def main() -> None:
        clients = [
            _client(address, f"bench-storm-{k}", [(topics.ctrl_down(storm_dev(k)), 1)], _ignore)
            for k in range(rate)
        ]
        tasks = [asyncio.create_task(c.run()) for c in clients]
        for client in clients:
            await client.wait_connected(30)
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        while (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "start":
            stop, times = asyncio.Event(), list[int]()
            storm = asyncio.create_task(_storm(clients, stop, times))
            await loop.run_in_executor(None, sys.stdin.readline)  # stop
            stop.set()
            print(json.dumps({"sent": await storm, "times": times}), flush=True)
        await asyncio.gather(*(client.close() for client in clients))
        for task in tasks:
            task.cancel()

    run_event_loop(main())


async def _sleep_until(when: float, stop: asyncio.Event) -> None:
    delay = when - time.monotonic()
    if delay > 0 and not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
