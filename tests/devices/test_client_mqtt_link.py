"""The terminal link's hand-cut QoS 0 PUBLISH path delivers exactly what mqtt5 would."""

from __future__ import annotations

import asyncio
import random

import mqtt5
import pytest

from devices.mqtt_link import TerminalMqtt
from transport.client import ClientOptions, MqttClient
from transport.errors import ConnectionLostError


def stream() -> tuple[bytes, list[tuple[str, bytes, int]]]:
    rng = random.Random(5)
    packets: list[bytes] = []
    expected: list[tuple[str, bytes, int]] = []
    for n in range(300):
        kind = n % 6
        if kind == 3:
            packets.append(mqtt5.PingRespPacket().write())
            continue
        topic = "xixin/v1/tg/grid-01/down" if kind in (0, 1) else f"xixin/v1/dev/T1/x{n}"
        payload = bytes(rng.randrange(256) for _ in range(rng.choice((0, 12, 60, 200, 300))))
        if kind == 2:  # a long properties block: left to mqtt5
            packet = mqtt5.PublishPacket(topic, payload, user_properties=[("k", "v" * 200)])
        elif kind == 4:  # QoS 1: acknowledged
            packet = mqtt5.PublishPacket(
                topic, payload, qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=n + 1
            )
        else:
            packet = mqtt5.PublishPacket(topic, payload)
        packets.append(packet.write())
        expected.append((topic, payload, 1 if kind == 4 else 0))
    return b"".join(packets), expected


@pytest.mark.parametrize("tapping", [False, True])
def test_hand_cut_publishes_match_mqtt5_in_any_chunking(tapping: bool) -> None:
    data, expected = stream()
    got: list[tuple[str, bytes, int]] = []
    tapped: list[tuple[str, bytes, int]] = []

    def tap(topic: bytes, buffer: bytes, start: int, stop: int) -> bool:
        if topic.endswith(b"/down"):
            tapped.append((topic.decode(), bytes(buffer[start:stop]), 0))
            got.append(tapped[-1])
            return True
        return False

    async def main() -> int:
        options = ClientOptions("127.0.0.1", 1, "T1")
        link = TerminalMqtt(options, lambda t, p, q: got.append((t, p, q)))
        reference_got: list[tuple[str, bytes, int]] = []
        reference = MqttClient(options, lambda t, p, q: reference_got.append((t, p, q)))
        sent: list[bytes] = []
        link.send_packet = sent.append  # type: ignore[method-assign]
        if tapping:
            link.raw_tap = tap
        rng = random.Random(9)
        offset = 0
        while offset < len(data):
            size = rng.choice((1, 2, 3, 7, 50, 400, 3000))
            chunk = data[offset : offset + size]
            link.feed(chunk)
            reference.feed(chunk)
            offset += size
        assert reference_got == expected
        return len(sent)  # PUBACKs queued for the QoS 1 publishes

    pubacks = asyncio.run(main())
    assert got == expected, "same messages, same order, tapped or not"
    assert pubacks == sum(1 for *_, q in expected if q)
    if tapping:
        assert len(tapped) == sum(1 for t, *_ in expected if t.endswith("/down")) > 50


def test_malformed_length_is_a_lost_connection() -> None:
    link = TerminalMqtt(ClientOptions("127.0.0.1", 1, "T1"), lambda t, p, q: None)
    link.raw_tap = lambda *a: True
    with pytest.raises(ConnectionLostError):
        link.feed(b"\x30\xff\xff\xff\xff\x7f" + b"\0" * 10)


def test_a_tapped_topic_that_is_not_utf8_is_a_lost_connection() -> None:
    link = TerminalMqtt(ClientOptions("127.0.0.1", 1, "T1"), lambda t, p, q: None)
    link.raw_tap = lambda *a: False  # declines: the topic is decoded for the handler
    with pytest.raises(ConnectionLostError, match="malformed topic"):
        link.feed(b"\x30\x05\x00\x01\xff\x00x")
