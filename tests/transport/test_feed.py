"""What the broker sends, through the public feed(): packets split and merged any way, and
malformed or unexpected input as an error of the connection, never an assert or a stray
exception."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import mqtt5
import pytest

from transport.client import ClientOptions, MqttClient
from transport.errors import ConnectionLostError, MqttError

OPTIONS = ClientOptions("127.0.0.1", 1, "T1")
Received = list[tuple[str, bytes, int]]


def stream() -> tuple[bytes, Received]:
    rng = random.Random(11)
    packets: list[bytes] = []
    expected: Received = []
    for n in range(200):
        if n % 5 == 3:
            packets.append(mqtt5.PingRespPacket().write())
            continue
        topic = f"xixin/v1/tg/grid-{n % 3:02d}/up"
        payload = rng.randbytes(rng.choice((0, 1, 40, 127, 128, 300, 20_000)))
        qos = 1 if n % 7 == 0 else 0
        if qos:
            packet = mqtt5.PublishPacket(
                topic, payload, qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=n + 1
            )
        else:
            packet = mqtt5.PublishPacket(topic, payload)
        packets.append(packet.write())
        expected.append((topic, payload, qos))
    return b"".join(packets), expected


def _client(got: Received) -> tuple[MqttClient, list[bytes]]:
    client = MqttClient(OPTIONS, lambda t, p, q: got.append((t, p, q)))
    sent: list[bytes] = []
    client.send_packet = sent.append  # type: ignore[method-assign]
    return client, sent


@pytest.mark.parametrize("sizes", [(1,), (2, 3, 7), (50, 400, 3000), (1 << 20,)])
def test_packets_split_and_merged_any_way_come_out_whole_and_in_order(
    sizes: tuple[int, ...],
) -> None:
    data, expected = stream()
    got: Received = []
    client, sent = _client(got)
    rng = random.Random(sum(sizes))
    offset = 0
    while offset < len(data):
        size = rng.choice(sizes)
        client.feed(data[offset : offset + size])
        offset += size
    assert got == expected
    assert client.rx_buffer == b"", "nothing left over"
    acked = [mqtt5.read(memoryview(p))[0] for p in sent]
    assert [a.packet_id for a in acked if isinstance(a, mqtt5.PubAckPacket)] == [
        n + 1 for n in range(200) if n % 7 == 0 and n % 5 != 3
    ]


def test_an_incomplete_packet_waits_for_the_rest() -> None:
    got: Received = []
    client, _ = _client(got)
    packet = mqtt5.PublishPacket("a/b", b"payload").write()
    client.feed(packet + packet[:4])
    assert got == [("a/b", b"payload", 0)]
    assert client.rx_buffer == packet[:4]
    client.feed(packet[4:])
    assert got == [("a/b", b"payload", 0)] * 2 and client.rx_buffer == b""


def test_a_failing_handler_is_logged_and_the_stream_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    def handler(topic: str, payload: bytes, qos: int) -> None:
        seen.append(topic)
        if topic == "bad":
            raise RuntimeError("boom")

    client = MqttClient(OPTIONS, handler)
    client.feed(mqtt5.PublishPacket("bad", b"").write() + mqtt5.PublishPacket("good", b"").write())
    assert seen == ["bad", "good"]
    assert "message handler failed on bad" in caplog.text


def test_an_overriding_deliver_sees_every_publish() -> None:
    class Counting(MqttClient):
        delivered = 0

        def deliver(self, topic: str, payload: bytes, qos: int) -> None:
            self.delivered += 1
            super().deliver(topic, payload, qos)

    got: Received = []
    client = Counting(OPTIONS, lambda t, p, q: got.append((t, p, q)))
    client.feed(mqtt5.PublishPacket("a", b"1").write() * 3)
    assert client.delivered == 3 and len(got) == 3


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x00\x00", id="packet type 0"),
        pytest.param(b"\x36\x05\x00\x01a\x00\x00", id="QoS 3"),
        pytest.param(b"\x30\x06\x00\x01a\x01\x7fx", id="unknown property"),
        pytest.param(b"\x30\xff\xff\xff\xff\x7f" + b"\0" * 10, id="length over 4 bytes"),
        pytest.param(b"\x40\x01\x00", id="truncated PUBACK"),
        # mqtt5 panics here (a BaseException), after reporting the UnicodeDecodeError as
        # unraisable: the client must still see a malformed packet.
        pytest.param(
            b"\x30\x05\x00\x01\xff\x00x",
            id="topic not UTF-8",
            marks=pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
        ),
        pytest.param(b"\x20\x03\x00\x77\x00", id="unknown CONNACK reason"),
    ],
)
def test_malformed_input_is_a_lost_connection(data: bytes) -> None:
    got: Received = []
    client, _ = _client(got)
    good = mqtt5.PublishPacket("before", b"x").write()
    with pytest.raises(ConnectionLostError, match="malformed packet"):
        client.feed(good + data)
    assert got == [("before", b"x", 0)], "what came before the bad packet was delivered"


def test_a_disconnect_from_the_broker_is_a_lost_connection() -> None:
    client, _ = _client([])
    packet = mqtt5.DisconnectPacket(reason_code=mqtt5.DisconnectReasonCode.SESSION_TAKEN_OVER)
    with pytest.raises(ConnectionLostError, match="SESSION_TAKEN_OVER"):
        client.feed(packet.write())


# ---- a fake broker that answers requests with the wrong kind of ack -----------------------------

Answer = Callable[[mqtt5.Packet], bytes]


async def _with_fake_broker(answer: Answer, body: Callable[[MqttClient], Awaitable[None]]) -> None:
    """A loopback server that accepts CONNECT and answers every other request with `answer`."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = b""
        while chunk := await reader.read(65536):
            buffer += chunk
            while buffer:
                try:
                    packet, size = mqtt5.read(memoryview(buffer))
                except IndexError:
                    break
                buffer = buffer[size:]
                if isinstance(packet, mqtt5.ConnectPacket):
                    writer.write(mqtt5.ConnAckPacket().write())
                elif not isinstance(packet, mqtt5.DisconnectPacket):
                    writer.write(answer(packet))
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = MqttClient(ClientOptions("127.0.0.1", port, "T1"), lambda *_: None)
    try:
        await client.connect(timeout=5)
        await body(client)
    finally:
        await client.close()
        server.close()
        await server.wait_closed()


def _packet_id(packet: mqtt5.Packet) -> int:
    packet_id = getattr(packet, "packet_id", None)
    assert isinstance(packet_id, int)
    return packet_id


def test_a_puback_for_a_subscribe_is_an_error_not_an_assert() -> None:
    async def body(client: MqttClient) -> None:
        with pytest.raises(MqttError, match="answered PUBACK, not SUBACK"):
            await client.subscribe([("a/#", 1)], timeout=5)

    asyncio.run(_with_fake_broker(lambda p: mqtt5.PubAckPacket(_packet_id(p)).write(), body))


def test_a_suback_for_a_publish_is_an_error() -> None:
    def answer(packet: mqtt5.Packet) -> bytes:
        return mqtt5.SubAckPacket(
            _packet_id(packet), [mqtt5.SubAckReasonCode.GRANTED_QOS_AT_LEAST_ONCE]
        ).write()

    async def body(client: MqttClient) -> None:
        with pytest.raises(MqttError, match="answered SUBACK, not PUBACK"):
            await client.publish("a/b", b"x", qos=1, timeout=5)

    asyncio.run(_with_fake_broker(answer, body))
