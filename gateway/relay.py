"""The voice relay hot path: forward a frame only if its sender holds the floor.

Per frame it does one dict lookup of the uplink topic (a cached route), a header-only frame
check, a floor check and one publish built from cached bytes. It never decodes audio, never
touches the database, never logs.

Downlinks are spread over several publishing connections (one per talkgroup, fixed, so a
talkgroup's frames keep their order): mosquitto 2.0 reads one packet per connection per loop
turn, so with hundreds of terminal connections in each turn a few gateway connections would
starve (each relayed frame is read from the gateway once, but the terminals' uplinks come from
as many connections as there are talkers).
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Sequence

import mqtt5

from codec.frame import FrameError, frame_burst
from gateway.floor import Floor
from gateway.log_once import LogOnce
from gateway.metrics import Counters
from protocol import topics

Sender = Callable[[bytes], None]
Tap = Callable[[str, str, bytes], None]
"""tap(floor key, talker, frame): sees every relayed frame (the recorder); must not block."""
log = logging.getLogger(__name__)


_MAX_ROUTES = 100_000  # uplink topics seen (device x talkgroup); the cache is cleared past it


def publish_head(topic: str, payload_size: int) -> bytes:
    """The bytes mqtt5 writes for a QoS 0 PUBLISH on `topic` before a payload of this size."""
    packet = mqtt5.PublishPacket(topic, bytes(payload_size)).write()
    return packet[: len(packet) - payload_size]


class _Downlink:
    """A downlink topic with its PUBLISH heads cached per payload size (<= MAX_FRAME_BYTES)."""

    __slots__ = ("heads", "send", "topic")

    def __init__(self, topic: str, send: Sender) -> None:
        self.topic = topic
        self.send = send
        self.heads: dict[int, bytes] = {}

    def publish(self, payload: bytes) -> None:
        head = self.heads.get(len(payload))
        if head is None:
            head = self.heads[len(payload)] = publish_head(self.topic, len(payload))
        self.send(head + payload)


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
        # The relay's own routes, set by the floors' owner (gateway.floors.FloorTable):
        # talkgroup -> (its floor, its downlink); device -> (its call's floor, the peer's downlink)
        self._talkgroups: dict[str, tuple[Floor, _Downlink]] = {}
        self._calls: dict[str, tuple[Floor, _Downlink]] = {}
        self._call_parties: dict[str, tuple[Floor, tuple[str, str]]] = {}
        # uplink topic -> (floor, talkgroup, device, downlink): the split is done once per topic
        self._routes: dict[str, tuple[Floor, str, str, _Downlink]] = {}
        self._log_once = LogOnce(self.log)
        self.tap: Tap | None = None

    def _sender(self, key: str) -> Sender:
        return self.senders[zlib.crc32(key.encode()) % len(self.senders)]

    def add_talkgroup(self, tg: str, floor: Floor) -> None:
        """Route a talkgroup's uplinks by `floor` (replacing an earlier floor of it)."""
        self._talkgroups[tg] = (floor, _Downlink(topics.tg_down(tg), self._sender(tg)))
        self._routes.clear()

    def add_call(self, key: str, floor: Floor, parties: tuple[str, str]) -> None:
        a, b = parties
        sender = self._sender(key)
        self._calls[a] = (floor, _Downlink(topics.voice_down(b), sender))
        self._calls[b] = (floor, _Downlink(topics.voice_down(a), sender))
        self._call_parties[key] = (floor, parties)

    def remove_call(self, key: str) -> None:
        """Forget a private call's routes; a party's route goes only if it still leads to this
        call (a device that has since called someone else keeps that route)."""
        entry = self._call_parties.pop(key, None)
        if entry is None:
            return
        floor, parties = entry
        for device in parties:
            route = self._calls.get(device)
            if route is not None and route[0] is floor:
                del self._calls[device]

    def _drop(self, reason: str, where: str) -> None:
        """Count every dropped frame; log the first of each (reason, topic) only."""
        dropped = self.counters.dropped
        dropped[reason] = dropped.get(reason, 0) + 1
        self._log_once.warning(
            (reason, where),
            "dropped voice frame (%s) on %s; further ones are only counted",
            reason,
            where,
        )

    def unexpected(self, topic: str) -> None:
        """A message on the voice connection that is no voice uplink: counted, logged once."""
        self._drop("bad_topic", topic)

    def talkgroup_frame(self, topic: str, payload: bytes) -> None:
        """Uplink `xixin/v1/tg/{tg}/up/{device}`."""
        route = self._routes.get(topic)
        if route is None:
            route = self._route(topic)
            if route is None:
                return
        floor, tg, device, downlink = route
        try:
            burst = frame_burst(payload)
        except FrameError:
            self._drop("malformed", topic)
            return
        if not floor.media(device, burst, self.clock()):
            self._drop("not_holder", topic)
            return
        self.counters.relayed += 1
        downlink.publish(payload)
        if self.tap is not None:
            self.tap(tg, device, payload)

    def _route(self, topic: str) -> tuple[Floor, str, str, _Downlink] | None:
        """Parse an uplink topic once; later frames on it find the route by lookup."""
        parsed = topics.talkgroup_uplink(topic)
        if parsed is None:
            self._drop("bad_topic", topic)
            return None
        tg, device = parsed
        known = self._talkgroups.get(tg)
        if known is None:
            self._drop("unknown_talkgroup", topic)
            return None
        if len(self._routes) >= _MAX_ROUTES:
            self._routes.clear()
        floor, downlink = known
        route = self._routes[topic] = (floor, tg, device, downlink)
        return route

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
        floor, downlink = route
        if not floor.media(device, burst, self.clock()):
            self._drop("not_holder", device)
            return
        self.counters.relayed += 1
        downlink.publish(payload)
        if self.tap is not None:
            self.tap(floor.key, device, payload)
