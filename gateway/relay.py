"""The voice relay hot path: forward a frame only if its sender holds the floor.

Per frame it does a topic split, two dict lookups, a header check without copying audio and one
pre-encoded publish. It never decodes audio, never touches the database, never logs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import mqtt5

from codec.frame import FrameError, frame_burst
from gateway.floor import Floor
from gateway.metrics import Counters


class Relay:
    def __init__(
        self,
        send: Callable[[bytes], None],
        counters: Counters,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.send = send
        self.counters = counters
        self.clock = clock
        self.floors: dict[str, Floor] = {}
        self.down_topics: dict[str, str] = {}
        self.call_floors: dict[str, Floor] = {}
        # device -> (floor of its private call, downlink topic of its peer)
        self.call_routes: dict[str, tuple[Floor, str]] = {}

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
        self.send(mqtt5.PublishPacket(self.down_topics[tg], payload).write())

    def call_frame(self, device: str, payload: bytes) -> None:
        """Uplink `xixin/v1/dev/{device}/call/up` of a private call."""
        route = self.call_routes.get(device)
        if route is None:
            self._drop("no_call")
            return
        try:
            burst = frame_burst(payload)
        except FrameError:
            self._drop("malformed")
            return
        floor, down_topic = route
        if not floor.media(device, burst, self.clock()):
            self._drop("not_holder")
            return
        self.counters.relayed += 1
        self.send(mqtt5.PublishPacket(down_topic, payload).write())
