"""The terminal's MQTT connection: gateway.mqtt's batched asyncio MQTT 5 client plus what a
terminal needs — PUBACK callbacks without a coroutine per publish, SUBSCRIBE/UNSUBSCRIBE without
waiting, a hook when the connection is lost, and an abrupt drop (so the Last Will fires).

These extensions use the base class's internals; they belong in the shared client (see the
simulator's report: gateway/mqtt.py would move to a package both sides import).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import mqtt5

from gateway.mqtt import MqttClient

AckCallback = Callable[[bool | None], None]
"""on_ack(True) PUBACK ok, (False) the broker refused it, (None) the connection was lost first."""


class TerminalMqtt(MqttClient):
    """gateway.mqtt.MqttClient plus what a terminal needs: PUBACK callbacks, UNSUBSCRIBE, a
    disconnect hook and an abrupt drop. (Candidates for the shared client; see the report.)"""

    def __init__(self, *args: Any, on_lost: Callable[[], None] | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.on_lost = on_lost

    def publish_acked(self, topic: str, payload: bytes, on_ack: AckCallback) -> bool:
        """QoS 1 publish without a coroutine; False (and no callback) when not connected."""
        if self._transport is None:
            return False
        packet_id = self._packet_id()
        fut: asyncio.Future[mqtt5.Packet] = asyncio.get_running_loop().create_future()
        self._pending[packet_id] = fut

        def done(f: asyncio.Future[mqtt5.Packet]) -> None:
            if f.cancelled() or f.exception() is not None:
                on_ack(None)
                return
            ack = f.result()
            on_ack(not (isinstance(ack, mqtt5.PubAckPacket) and int(ack.reason_code) >= 0x80))

        fut.add_done_callback(done)
        self._send(
            mqtt5.PublishPacket(
                topic, payload, qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=packet_id
            ).write()
        )
        return True

    def subscribe_nowait(self, filters: list[tuple[str, int]]) -> None:
        """SUBSCRIBE without waiting for the SUBACK (the broker applies it before anything we
        send after it on this connection)."""
        if self._transport is not None and filters:
            topic_filters = [mqtt5.TopicFilter(p, max_qos=mqtt5.QoS(q)) for p, q in filters]
            self._send(mqtt5.SubscribePacket(self._packet_id(), topic_filters).write())

    def unsubscribe_nowait(self, filters: list[str]) -> None:
        if self._transport is not None and filters:
            self._send(mqtt5.UnsubscribePacket(self._packet_id(), filters).write())

    def abort(self) -> None:
        """Drop the TCP connection without DISCONNECT (the broker fires the Last Will); run()
        returns instead of reconnecting."""
        self._closing = True
        if self._transport is not None:
            self._transport.abort()

    def _drop_connection(self) -> None:
        was_connected = self.is_connected
        super()._drop_connection()
        if was_connected and self.on_lost is not None:
            self.on_lost()
