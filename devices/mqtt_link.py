"""The terminal's MQTT connection: the transport's batched asyncio MQTT 5 client plus what a
terminal needs — a raw tap for the voice downlink, PUBACK callbacks without a coroutine per
publish, SUBSCRIBE/UNSUBSCRIBE without waiting and a hook when the connection is lost.

The client itself (transport/client.py) is shared with the gateway; these extensions use only
its public hooks (feed, deliver, send_packet, next_packet_id, expect_ack,
handle_control_packet, on_connection_dropped).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

import mqtt5

from transport.client import MqttClient
from transport.errors import ConnectionLostError

AckCallback = Callable[[bool | None], None]
"""on_ack(True) PUBACK ok, (False) the broker refused it, (None) the connection was lost first."""

RawTap = Callable[[bytes, bytes, int, int], bool]
"""raw_tap(topic, buffer, payload_start, payload_end) -> True if it consumed the message."""
_PUBLISH_QOS0 = 0x30  # first byte of a QoS 0 PUBLISH without DUP/RETAIN: the voice downlink


class TerminalMqtt(MqttClient):
    """transport.client.MqttClient plus what a terminal needs: a raw tap, PUBACK callbacks,
    UNSUBSCRIBE and an `on_lost` callback."""

    def __init__(self, *args: Any, on_lost: Callable[[], None] | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.on_lost = on_lost
        self.raw_tap: RawTap | None = None

    def feed(self, data: bytes) -> None:
        """With a raw tap, QoS 0 PUBLISH packets (voice) are cut out of the stream by hand and
        offered to the tap before any object is built; everything else goes through mqtt5 as
        in the base class. A listening terminal of a large simulated fleet spends most of its
        time here."""
        tap = self.raw_tap
        if tap is None:
            super().feed(data)
            return
        buffer = self.rx_buffer + data if self.rx_buffer else data
        offset, end = 0, len(buffer)
        while offset < end:
            if buffer[offset] == _PUBLISH_QOS0:
                cut = _cut_publish(buffer, offset, end)
                if cut is None:
                    break  # incomplete: wait for more bytes
                if cut is not False:
                    topic, start, stop = cut
                    if not tap(topic, buffer, start, stop):
                        try:
                            text = topic.decode()
                        except UnicodeDecodeError as exc:
                            raise ConnectionLostError(f"malformed topic: {exc}") from exc
                        self.deliver(text, buffer[start:stop], 0)
                    offset = stop
                    continue
            try:
                packet, size = mqtt5.read(memoryview(buffer)[offset:])
            except IndexError:
                break
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # mqtt5 panics (not an Exception) on some bad input
                raise ConnectionLostError(f"malformed packet from broker: {exc!r}") from exc
            offset += size
            if type(packet) is mqtt5.PublishPacket:
                qos = 0 if packet.qos == mqtt5.QoS.AT_MOST_ONCE else 1
                if qos and packet.packet_id is not None:
                    self.send_packet(mqtt5.PubAckPacket(packet.packet_id).write())
                self.deliver(packet.topic, packet.payload, qos)
            else:
                self.handle_control_packet(packet)
        self.rx_buffer = buffer[offset:] if offset < end else b""

    def publish_acked(self, topic: str, payload: bytes, on_ack: AckCallback) -> bool:
        """QoS 1 publish without a coroutine; False (and no callback) when not connected."""
        if not self.is_open:
            return False
        packet_id = self.next_packet_id()
        fut = self.expect_ack(packet_id)

        def done(f: asyncio.Future[mqtt5.Packet]) -> None:
            if f.cancelled() or f.exception() is not None:
                on_ack(None)
                return
            ack = f.result()
            on_ack(not (isinstance(ack, mqtt5.PubAckPacket) and int(ack.reason_code) >= 0x80))

        fut.add_done_callback(done)
        self.send_packet(
            mqtt5.PublishPacket(
                topic, payload, qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=packet_id
            ).write()
        )
        return True

    def subscribe_nowait(self, filters: list[tuple[str, int]]) -> None:
        """SUBSCRIBE without waiting for the SUBACK (the broker applies it before anything we
        send after it on this connection)."""
        if self.is_open and filters:
            topic_filters = [mqtt5.TopicFilter(p, max_qos=mqtt5.QoS(q)) for p, q in filters]
            self.send_packet(mqtt5.SubscribePacket(self.next_packet_id(), topic_filters).write())

    def unsubscribe_nowait(self, filters: list[str]) -> None:
        if self.is_open and filters:
            self.send_packet(mqtt5.UnsubscribePacket(self.next_packet_id(), filters).write())

    def on_connection_dropped(self) -> None:
        if self.on_lost is not None:
            self.on_lost()


def _cut_publish(
    buf: bytes, offset: int, end: int
) -> tuple[bytes, int, int] | Literal[False] | None:
    """Locate a QoS 0 PUBLISH at `offset`: (topic, payload start, packet end); None if the
    packet is not complete yet; False if it has a form this cutter leaves to mqtt5."""
    length, shift, pos = 0, 0, offset + 1
    while True:
        if pos >= end:
            return None
        byte = buf[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift > 21:
            return False
    stop = pos + length
    if stop > end:
        return None
    if length < 3:
        return False
    topic_end = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    if topic_end >= stop or buf[topic_end] & 0x80:
        return False  # no room for the properties length, or a long properties block
    return buf[pos + 2 : topic_end], topic_end + 1 + buf[topic_end], stop
