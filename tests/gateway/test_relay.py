"""The relay core without sockets: what is forwarded, what is dropped, counted and logged once."""

from __future__ import annotations

import logging

import mqtt5
import pytest

from codec.frame import VoiceFrame, encode_frame
from gateway.floor import Floor, Priority
from gateway.metrics import Counters
from gateway.relay import Relay, publish_head


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def frame(burst: int, seq: int = 0) -> bytes:
    return encode_frame(VoiceFrame(burst, seq, seq * 960, 20, (b"\x01" * 40,)))


@pytest.fixture
def setup() -> tuple[Relay, list[list[bytes]], Floor, Clock]:
    outs: list[list[bytes]] = [[], [], []]
    clock = Clock()
    relay = Relay([o.append for o in outs], Counters(), clock)
    floor = Floor("grid-01")
    relay.add_talkgroup("grid-01", floor)
    relay.add_talkgroup("grid-02", Floor("grid-02"))
    floor.request("T001", Priority.NORMAL, clock.now)
    return relay, outs, floor, clock


def test_holder_frames_forwarded_unchanged_on_one_sender(
    setup: tuple[Relay, list[list[bytes]], Floor, Clock],
) -> None:
    relay, outs, floor, _ = setup
    for seq in range(5):
        relay.talkgroup_frame("xixin/v1/tg/grid-01/up/T001", frame(floor.burst, seq))
    used = [o for o in outs if o]
    assert len(used) == 1, "one talkgroup's frames must keep one connection (order)"
    packets = [mqtt5.read(memoryview(data))[0] for data in used[0]]
    assert all(p.topic == "xixin/v1/tg/grid-01/down" for p in packets)  # type: ignore[union-attr]
    assert [p.payload for p in packets] == [frame(floor.burst, s) for s in range(5)]  # type: ignore[union-attr]
    assert relay.counters.relayed == 5


def test_drops_are_counted_and_logged_once(
    setup: tuple[Relay, list[list[bytes]], Floor, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    relay, outs, floor, _ = setup
    caplog.set_level(logging.WARNING)
    for _ in range(3):
        relay.talkgroup_frame("xixin/v1/tg/grid-01/up/T002", frame(floor.burst))  # not holder
        relay.talkgroup_frame("xixin/v1/tg/grid-01/up/T001", frame(floor.burst + 1))  # old burst
        relay.talkgroup_frame("xixin/v1/tg/grid-01/up/T001", b"\x01\x00garbage")
        relay.talkgroup_frame("xixin/v1/tg/grid-99/up/T001", frame(1))
        relay.talkgroup_frame("xixin/v1/tg/grid-01/down", frame(1))
        relay.call_frame("T001", frame(1))
    assert relay.counters.dropped == {
        "not_holder": 6,
        "malformed": 3,
        "unknown_talkgroup": 3,
        "bad_topic": 3,
        "no_call": 3,
    }
    assert relay.counters.relayed == 0 and not any(outs)
    assert len([r for r in caplog.records if "dropped voice frame" in r.message]) == 6


def test_private_call_routes_to_the_peer(
    setup: tuple[Relay, list[list[bytes]], Floor, Clock],
) -> None:
    relay, outs, _, clock = setup
    call = Floor("call:T001:T004")
    relay.add_call("call:T001:T004", call, ("T001", "T004"))
    call.request("T004", Priority.NORMAL, clock.now)
    relay.call_frame("T004", frame(call.burst))
    relay.call_frame("T001", frame(call.burst))  # T001 does not hold this call's floor
    sent = [data for o in outs for data in o]
    assert len(sent) == 1
    packet = mqtt5.read(memoryview(sent[0]))[0]
    assert packet.topic == "xixin/v1/dev/T001/voice/down"  # type: ignore[union-attr]
    assert relay.counters.dropped == {"not_holder": 1}


def test_relay_needs_a_sender() -> None:
    with pytest.raises(ValueError):
        Relay([], Counters())


@pytest.mark.parametrize("size", [0, 1, 80, 94, 127, 128, 200, 4096, 16_383, 16_384, 70_000])
@pytest.mark.parametrize("topic", ["xixin/v1/tg/grid-01/down", "xixin/v1/dev/T1/voice/down", "t"])
def test_cached_publish_head_is_what_mqtt5_writes(topic: str, size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert publish_head(topic, size) + payload == mqtt5.PublishPacket(topic, payload).write()


def test_a_route_follows_a_replaced_talkgroup(
    setup: tuple[Relay, list[list[bytes]], Floor, Clock],
) -> None:
    """Routes are cached per uplink topic; re-adding a talkgroup must not keep the old floor."""
    relay, _outs, floor, clock = setup
    relay.talkgroup_frame("xixin/v1/tg/grid-01/up/T001", frame(floor.burst))
    fresh = Floor("grid-01")
    relay.add_talkgroup("grid-01", fresh)
    fresh.request("T002", Priority.NORMAL, clock.now)
    relay.talkgroup_frame("xixin/v1/tg/grid-01/up/T001", frame(floor.burst))  # old floor's burst
    relay.talkgroup_frame("xixin/v1/tg/grid-01/up/T002", frame(fresh.burst))
    assert relay.counters.relayed == 2 and relay.counters.dropped == {"not_holder": 1}
