"""The voice relay hot path: forward a frame only if its sender holds the floor.

Per frame it does a topic split, two dict lookups, a frame check without copying audio and one
publish. It never decodes audio, never touches the database, never logs.

Downlinks are spread over several publishing connections (one per talkgroup, fixed, so a
talkgroup's frames keep their order): mosquitto reads one packet per connection per loop turn,
so a single gateway connection would cap the relay at what one socket gets from the broker.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Sequence

import mqtt5

from codec.frame import FrameError, frame_burst
from gateway import topics
from gateway.floor import Floor
from gateway.metrics import Counters

Sender = Callable[[bytes], None]
Tap = Callable[[str, str, bytes], None]
"""tap(floor key, talker, frame): sees every relayed frame (the recorder); must not block."""
log = logging.getLogger(__name__)


class Relay:
    def __init__(
        self,
        senders: Sequence[Sender],
        counters: Counters,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
    ) -> None:
        self.log = logger or log
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
        self._logged: set[tuple[str, str]] = set()
        self.tap: Tap | None = None

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

    def _drop(self, reason: str, where: str) -> None:
        """Count every dropped frame; log the first of each (reason, topic) only."""
        dropped = self.counters.dropped
        dropped[reason] = dropped.get(reason, 0) + 1
        key = (reason, where)
        if key not in self._logged and len(self._logged) < 10_000:
            self._logged.add(key)
            self.log.warning(
                "dropped voice frame (%s) on %s; further ones are only counted", reason, where
            )

    def talkgroup_frame(self, topic: str, payload: bytes) -> None:
        """Uplink `xixin/v1/tg/{tg}/up/{device}`."""
        parts = topic.split("/")
        if len(parts) != 6 or parts[4] != "up":
            self._drop("bad_topic", topic)
            return
        tg = parts[3]
        floor = self.floors.get(tg)
        if floor is None:
            self._drop("unknown_talkgroup", topic)
            return
        try:
            burst = frame_burst(payload)
        except FrameError:
            self._drop("malformed", topic)
            return
        if not floor.media(parts[5], burst, self.clock()):
            self._drop("not_holder", topic)
            return
        self.counters.relayed += 1
        down_topic, send = self._down[tg]
        send(mqtt5.PublishPacket(down_topic, payload).write())
        if self.tap is not None:
            self.tap(tg, parts[5], payload)

    def call_frame(self, device: str, payload: bytes) -> None:
        """Uplink `xixin/v1/dev/{device}/call/up` of a private call."""
        route = self._calls.get(device)
        if route is None:
            self._drop("no_call", device)
            return
        try:
            burst = frame_burst(payload)
        except FrameError:
            self._drop("malformed", device)
            return
        floor, down_topic, send = route
        if not floor.media(device, burst, self.clock()):
            self._drop("not_holder", device)
            return
        self.counters.relayed += 1
        send(mqtt5.PublishPacket(down_topic, payload).write())
        if self.tap is not None:
            self.tap(floor.key, device, payload)
