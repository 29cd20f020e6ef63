"""The voice relay hot path: forward a frame only if its sender holds the floor.

Per frame it does a topic split, two dict lookups, a frame check without copying audio and one
publish. It never decodes audio, never touches the database, never logs.

Downlinks are spread over several publishing connections (one per talkgroup, fixed, so a
talkgroup's frames keep their order): mosquitto reads one packet per connection per loop turn,
so a single gateway connection would cap the relay at what one socket gets from the broker.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Sequence

import mqtt5

from codec.frame import FrameError, frame_burst
from gateway import topics
from gateway.floor import Floor
from gateway.metrics import Counters

Sender = Callable[[bytes], None]


class Relay:
    def __init__(
        self,
        senders: Sequence[Sender],
        counters: Counters,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not senders:
            raise ValueError("the relay needs at least one sender")
        self.senders = list(senders)
        self.counters = counters
        self.clock = clock
        self.floors: dict[str, Floor] = {}
        self.call_floors: dict[str, Floor] = {}
        # talkgroup -> (downlink topic, sender); device -> (its call's floor, peer downlink, sender)
        self._down: dict[str, tuple[str, Sender]] = {}
        self._calls: dict[str, tuple[Floor, str, Sender]] = {}

    def _sender(self, key: str) -> Sender:
        return self.senders[zlib.crc32(key.encode()) % len(self.senders)]

    def add_talkgroup(self, tg: str, floor: Floor) -> None:
        self.floors[tg] = floor
        self._down[tg] = (topics.tg_down(tg), self._sender(tg))

    def add_call(self, key: str, floor: Floor, parties: tuple[str, str]) -> None:
        a, b = parties
        self.call_floors[key] = floor
        sender = self._sender(key)
        self._calls[a] = (floor, topics.voice_down(b), sender)
        self._calls[b] = (floor, topics.voice_down(a), sender)

    def _drop(self, reason: str) -> None:
        dropped = self.counters.dropped
        dropped[reason] = dropped.get(reason, 0) + 1

    def talkgroup_frame(self, topic: str, payload: bytes) -> None:
        """Uplink `xixin/v1/tg/{tg}/up/{device}`."""
        parts = topic.split("/")
        if len(parts) != 6 or parts[4] != "up":
            self._drop("bad_topic")
            return
        tg = parts[3]
        floor = self.floors.get(tg)
        if floor is None:
            self._drop("unknown_talkgroup")
            return
        try:
            burst = frame_burst(payload)
        except FrameError:
            self._drop("malformed")
            return
        if not floor.media(parts[5], burst, self.clock()):
            self._drop("not_holder")
            return
        self.counters.relayed += 1
        down_topic, send = self._down[tg]
        send(mqtt5.PublishPacket(down_topic, payload).write())

    def call_frame(self, device: str, payload: bytes) -> None:
        """Uplink `xixin/v1/dev/{device}/call/up` of a private call."""
        route = self._calls.get(device)
        if route is None:
            self._drop("no_call")
            return
        try:
            burst = frame_burst(payload)
        except FrameError:
            self._drop("malformed")
            return
        floor, down_topic, send = route
        if not floor.media(device, burst, self.clock()):
            self._drop("not_holder")
            return
        self.counters.relayed += 1
        send(mqtt5.PublishPacket(down_topic, payload).write())
