"""An asyncio MQTT 5 client on the `mqtt5` sans-I/O packet codec, built for batching.

One reader task parses every complete packet in each chunk read from the socket and hands
publishes to a synchronous handler; whatever the handler publishes is appended to one outgoing
buffer that is written once per event-loop turn. That batching is what lets a Python relay carry
tens of thousands of frames per second through mosquitto (paho's per-message path cannot).

The client owns its connection: `run()` connects, keeps alive and reconnects with capped,
jittered backoff until `close()`. Both sides use it: the gateway
(relay, control plane, tracking ingest) and the terminal-side clients (devices/aio_client.py,
devices/mqtt_link.py).

Subclasses extend it through public hooks only:

- `feed(data)` parses received bytes (the socket calls it; tests call it with made-up bytes).
  A subclass may override it to cut packets its own way; it then keeps `rx_buffer`, the start
  of an incomplete packet, as the base does.
- `deliver(topic, payload, qos)` hands one received PUBLISH to the handler; override it to see
  every publish (the base `feed` then calls it instead of the handler).
- `handle_control_packet(packet)` handles every received packet that is not a PUBLISH.
- `on_connection_dropped()` runs once each time an established connection is lost or closed.
- `send_packet(data)`, `next_packet_id()` and `expect_ack(packet_id)` build requests of one's
  own: an encoded packet batched into the next write, a packet id, and the future its
  PUBACK/SUBACK/UNSUBACK resolves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import mqtt5

from transport.backoff import Backoff, Jitter
from transport.errors import (
    ConnectionLostError,
    ConnectRefusedError,
    MqttError,
    TlsVerificationError,
)

log = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes, int], None]
"""handler(topic, payload, qos) — called on the reader task; must not block."""


@dataclass(slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(slots=True)
class ClientOptions:
    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = None
    keep_alive: int = 30
    will: Will | None = None
    tls: ssl.SSLContext | None = None
    # A Unix socket of a broker on this machine, used instead of host:port: no TCP stack.
    unix_path: str | None = None
    subscriptions: Sequence[tuple[str, int]] = field(default_factory=list)
    read_size: int = 256 * 1024
    backoff_initial: float = 0.2
    backoff_max: float = 10.0
    # A persistent session (clean_start False, kept session_expiry_s after a disconnect): the
    # broker queues QoS 1 messages for us while we are away and resends unacknowledged ones.
    clean_start: bool = True
    session_expiry_s: int = 0
    # QoS 1 messages are acknowledged by the application (ack()) once it has kept them, not
    # on receipt: a message that was not kept is resent by the broker after a reconnect.
    manual_ack: bool = False


class _Connection(asyncio.Protocol):
    """Socket callbacks straight into the client's parser: no coroutine per read."""

    def __init__(self, client: MqttClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, hence no isinstance check.
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self.client.feed(data)
        except MqttError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionLostError(f"connection lost: {exc}" if exc else "connection closed"))

    def _fail(self, exc: Exception) -> None:
        if not self.closed.done():
            self.closed.set_exception(exc)
            self.closed.exception()  # mark retrieved; run() reports it
        if self.transport is not None:
            self.transport.close()


class MqttClient:
    """One connection, one owner: `await client.run()` connects and reconnects until close().

    Or as an async context manager, which runs run() as a task for the block:

        async with MqttClient(options, handler) as client:  # connected here
            await client.publish("a/b", b"x")
        # closed here, and run() ended

    Entering waits until connected and raises what run() gives up on (ConnectRefusedError,
    TlsVerificationError); a broker that cannot be reached is retried as in run(), so bound
    the wait with asyncio.timeout() if it must end. A client is entered once: after the
    block it is closed for good, like after close().
    """

    def __init__(
        self,
        options: ClientOptions,
        on_message: MessageHandler,
        *,
        on_connect: Callable[[], Awaitable[None]] | None = None,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        jitter: Jitter | random.Random | None = None,
    ) -> None:
        """`clock`, `sleep` and `jitter` drive run()'s reconnects (see Backoff): tests pass
        their own to run the reconnect loop without waiting."""
        self.options = options
        self.on_message = on_message
        self.on_connect = on_connect
        self.log = logger or log
        self.clock = clock
        self.sleep = sleep
        self.jitter = jitter
        self._conn: _Connection | None = None
        self._transport: asyncio.Transport | None = None
        # Received bytes not parsed yet: the start of an incomplete packet (see feed()).
        self.rx_buffer = b""
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[mqtt5.Packet]] = {}
        self._connack: asyncio.Future[mqtt5.ConnAckPacket] | None = None
        self._closing = False
        self._connected = asyncio.Event()
        self.connections = 0
        self.bytes_out = 0
        self._run_task: asyncio.Task[None] | None = None
        self.session_present = False  # the broker resumed our session at the last CONNACK
        # With manual_ack: the packet id of the QoS 1 message being handled (None for QoS 0),
        # to pass to ack() with `epoch` (acks are valid on their own connection only).
        self.current_packet_id: int | None = None
        # Counts CONNACKs as they are parsed, before connect() resumes: a resumed session's
        # resent messages arrive in the same read as the CONNACK and belong to the new one.
        self.epoch = 0

    @property
    def is_connected(self) -> bool:
        """The broker accepted the connection (CONNACK) and it has not been lost since."""
        return self._connected.is_set()

    @property
    def is_open(self) -> bool:
        """A connection is open, CONNACK or not yet: what send_packet() queues now goes out
        on it. False between connections, when queued packets are dropped."""
        return self._transport is not None

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    # ---- connection lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._run_task is not None or self._closing:
            raise RuntimeError("an MqttClient is entered once, and not after close()")
        ready = asyncio.Event()
        task = self._run_task = asyncio.create_task(self.run(ready))
        connected = asyncio.create_task(ready.wait())
        try:
            await asyncio.wait({task, connected}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # cancelled (a timeout) while connecting: stop trying
            connected.cancel()
            await self._stop()
            raise
        connected.cancel()
        if ready.is_set():
            return self
        await self._stop()  # run() ended without connecting
        if not task.cancelled() and (exc := task.exception()) is not None:
            raise exc
        raise ConnectionLostError("the client was closed before it connected")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        error = await self._stop()
        if error is not None and exc is None:
            raise error  # run() gave up during the block, e.g. refused on a reconnect

    async def _stop(self) -> BaseException | None:
        """Close, end the run() task of __aenter__ and return what it failed with, if anything."""
        task, self._run_task = self._run_task, None
        await self.close()
        if task is None:
            return None
        if not task.done():
            task.cancel()  # asleep between attempts, or yet to notice the close
        await asyncio.wait({task})
        return None if task.cancelled() else task.exception()

    async def connect(self, timeout: float = 10.0) -> mqtt5.ConnAckPacket:
        opts = self.options
        loop = asyncio.get_running_loop()
        self.rx_buffer = b""
        if opts.unix_path is not None:
            opening = loop.create_unix_connection(lambda: _Connection(self), opts.unix_path)
        else:
            opening = loop.create_connection(
                lambda: _Connection(self), opts.host, opts.port, ssl=opts.tls
            )
        transport, conn = await asyncio.wait_for(opening, timeout)
        self._conn, self._transport = conn, transport
        will = None
        if opts.will is not None:
            will = mqtt5.Will(
                opts.will.topic,
                payload=opts.will.payload,
                qos=mqtt5.QoS(opts.will.qos),
                retain=opts.will.retain,
            )
        connect = mqtt5.ConnectPacket(
            opts.client_id,
            username=opts.username,
            password=opts.password.encode() if opts.password is not None else None,
            clean_start=opts.clean_start,
            session_expiry_interval=opts.session_expiry_s,
            will=will,
            keep_alive=opts.keep_alive,
        )
        self._connack = loop.create_future()
        transport.write(connect.write())
        waiters: set[asyncio.Future[object]] = {self._connack, conn.closed}  # type: ignore[arg-type]
        done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if self._connack not in done:
            transport.close()
            if conn.closed in done:
                raise ConnectionLostError(f"no CONNACK: {conn.closed.exception()}")
            raise ConnectionLostError(f"no CONNACK within {timeout} s")
        connack = self._connack.result()
        if connack.reason_code != mqtt5.ConnAckReasonCode.SUCCESS:
            transport.close()
            raise ConnectRefusedError(connack.reason_code, connack.reason_str)
        self._connected.set()
        self.connections += 1
        self.session_present = connack.session_present
        if opts.subscriptions:
            await self.subscribe(list(opts.subscriptions))
        return connack

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Stay connected until close(): reconnect with capped, jittered exponential backoff
        (Backoff from the options' backoff_initial and backoff_max). Set `ready` once
        connected and on_connect has run. Raise ConnectRefusedError and TlsVerificationError,
        which retrying cannot fix."""
        backoff = Backoff(self.options.backoff_initial, self.options.backoff_max, self.jitter)
        failures, outage_began = 0, 0.0  # of the current outage: one warning, not one per try
        while not self._closing:
            delay = 0.0
            try:
                await self.connect()
                backoff.reset()
                if failures:
                    self.log.info(
                        "mqtt %s: connected after %d failed attempts over %.1f s",
                        self.options.client_id,
                        failures,
                        self.clock() - outage_began,
                    )
                    failures = 0
                if self.on_connect is not None:
                    await self.on_connect()
                if ready is not None:
                    ready.set()
                await self._serve()
            except ConnectRefusedError:
                raise
            except ssl.SSLCertVerificationError as exc:
                # Retrying cannot fix a certificate that does not verify: stop and say why.
                raise TlsVerificationError(
                    f"TLS verification of {self.options.host}:{self.options.port} failed: "
                    f"{exc.verify_message}"
                ) from exc
            except (TimeoutError, OSError, MqttError) as exc:
                if self._closing:
                    break
                delay = backoff.next_delay()
                if not failures:
                    outage_began = self.clock()
                    self.log.warning(
                        "mqtt %s: %s; reconnecting in %.1f s, backing off to %g s "
                        "(further attempts are logged at debug level until one succeeds)",
                        self.options.client_id,
                        exc or type(exc).__name__,
                        delay,
                        self.options.backoff_max,
                    )
                else:
                    self.log.debug(
                        "mqtt %s: %s; reconnecting in %.1f s",
                        self.options.client_id,
                        exc or type(exc).__name__,
                        delay,
                    )
                failures += 1
            finally:
                self._drop_connection()
            if self._closing:
                break
            await self.sleep(delay)

    async def _serve(self) -> None:
        """Ping every half keep-alive until the connection closes; raise why it closed."""
        if self._conn is None:
            raise ConnectionLostError("connection closed before it was served")
        closed = self._conn.closed
        interval = max(1.0, self.options.keep_alive / 2)
        while True:
            done, _ = await asyncio.wait({closed}, timeout=interval)
            if done:
                closed.result()
                raise ConnectionLostError("connection closed")
            self.send_packet(mqtt5.PingReqPacket().write())

    def _drop_connection(self) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if self._transport is not None:
            self._transport.close()
        self._transport = None
        self._conn = None
        self._out.clear()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionLostError("connection lost before the reply"))
        self._pending.clear()
        if was_connected:
            self.on_connection_dropped()

    def on_connection_dropped(self) -> None:
        """Hook: an established connection was lost or closed (once per connection, after the
        replies still awaited have failed with ConnectionLostError). The base does nothing."""

    def pause_reading(self) -> bool:
        """Stop reading the socket until resume_reading() (backpressure: the broker holds what
        it sends meanwhile). False when no connection is open; a reconnect reads again."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return False
        transport.pause_reading()
        return True

    @property
    def is_reading(self) -> bool:
        """A connection is open and its socket is read (not paused)."""
        transport = self._transport
        return transport is not None and not transport.is_closing() and transport.is_reading()

    def resume_reading(self) -> None:
        """Read the socket again after pause_reading() (nothing when it reads already)."""
        transport = self._transport
        if transport is not None and not transport.is_closing() and not transport.is_reading():
            transport.resume_reading()

    def abort(self) -> None:
        """Drop the connection without DISCONNECT (the broker publishes the Last Will); run()
        returns instead of reconnecting."""
        self._closing = True
        if self._transport is not None:
            self._transport.abort()

    async def close(self) -> None:
        self._closing = True
        transport = self._transport
        if transport is not None and self._connected.is_set():
            with contextlib.suppress(OSError, RuntimeError):
                self._flush()
                transport.write(mqtt5.DisconnectPacket().write())
                if self._conn is not None:
                    transport.close()  # flushes what is buffered, then closes
                    with contextlib.suppress(MqttError, asyncio.TimeoutError):
                        await asyncio.wait_for(asyncio.shield(self._conn.closed), 2.0)
        self._drop_connection()

    # ---- sending ----------------------------------------------------------------------------

    def next_packet_id(self) -> int:
        """A packet id for a request of one's own (1..65535, cycling)."""
        self._next_id = self._next_id % 0xFFFF + 1
        return self._next_id

    def expect_ack(self, packet_id: int) -> asyncio.Future[mqtt5.Packet]:
        """A future resolved with the PUBACK, SUBACK or UNSUBACK that carries `packet_id`, or
        failed with ConnectionLostError when the connection is lost first. Register it before
        sending the request."""
        fut: asyncio.Future[mqtt5.Packet] = asyncio.get_running_loop().create_future()
        self._pending[packet_id] = fut
        return fut

    def send_packet(self, data: bytes) -> None:
        """Queue an encoded packet for the next write (one write per event-loop turn). What is
        queued while no connection is open (see is_open) is dropped."""
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._out:
            return
        data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        self._out.clear()
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self.bytes_out += len(data)
        transport.write(data)

    def publish_nowait(
        self, topic: str, payload: bytes, qos: int = 0, retain: bool = False
    ) -> bool:
        """Publish batched into the next write without waiting for any PUBACK.

        Returns False when not connected (the message is not sent).
        """
        if self._transport is None:
            return False
        if qos:
            packet = mqtt5.PublishPacket(
                topic,
                payload,
                qos=mqtt5.QoS.AT_LEAST_ONCE,
                retain=retain,
                packet_id=self.next_packet_id(),
            )
        else:
            packet = mqtt5.PublishPacket(topic, payload, retain=retain)
        self.send_packet(packet.write())
        return True

    def publish_raw(self, data: bytes) -> None:
        """Queue an already-encoded packet (the relay pre-encodes nothing else per frame)."""
        if self._transport is not None:
            self.send_packet(data)

    async def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, timeout: float = 10.0
    ) -> None:
        """Publish and, for QoS 1, wait for the PUBACK; raise MqttError if it reports failure."""
        if self._transport is None:
            raise ConnectionLostError("not connected")
        if qos == 0:
            self.publish_nowait(topic, payload, retain=retain)
            return
        packet_id = self.next_packet_id()
        fut = self.expect_ack(packet_id)
        self.send_packet(
            mqtt5.PublishPacket(
                topic, payload, qos=mqtt5.QoS.AT_LEAST_ONCE, retain=retain, packet_id=packet_id
            ).write()
        )
        ack = await asyncio.wait_for(fut, timeout)
        if not isinstance(ack, mqtt5.PubAckPacket):
            raise MqttError(f"publish to {topic}: the broker answered {_kind(ack)}, not PUBACK")
        if int(ack.reason_code) >= 0x80:
            raise MqttError(f"publish to {topic} refused: {ack.reason_code.name}")

    async def subscribe(self, filters: list[tuple[str, int]], timeout: float = 10.0) -> list[int]:
        if self._transport is None:
            raise ConnectionLostError("not connected")
        packet_id = self.next_packet_id()
        fut = self.expect_ack(packet_id)
        topic_filters = [mqtt5.TopicFilter(p, max_qos=mqtt5.QoS(q)) for p, q in filters]
        self.send_packet(mqtt5.SubscribePacket(packet_id, topic_filters).write())
        ack = await asyncio.wait_for(fut, timeout)
        if not isinstance(ack, mqtt5.SubAckPacket):
            raise MqttError(f"subscribe: the broker answered {_kind(ack)}, not SUBACK")
        codes = [int(code) for code in ack.reason_codes]
        refused = [p for (p, _), code in zip(filters, codes, strict=False) if code >= 0x80]
        if refused:
            raise MqttError(f"subscription refused for {refused}")
        return codes

    # ---- receiving --------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Parse received bytes: handle every complete packet, keep the incomplete tail in
        `rx_buffer` for the next call. PUBLISH packets go to the handler (or an overriding
        `deliver`), QoS 1 ones acknowledged first; the others to handle_control_packet().
        Raise ConnectionLostError on a malformed packet or a DISCONNECT from the broker."""
        buffer = self.rx_buffer + data if self.rx_buffer else data
        view = memoryview(buffer)
        read = mqtt5.read
        publish_type = mqtt5.PublishPacket
        qos0 = mqtt5.QoS.AT_MOST_ONCE
        # deliver() inlined: one call per publish on the hot path, unless a subclass overrides it.
        handler = self.on_message if type(self).deliver is _base_deliver else self.deliver
        auto_ack = not self.options.manual_ack
        offset = 0
        end = len(view)
        while offset < end:
            try:
                packet, size = read(view[offset:])
            except IndexError:
                break  # incomplete packet: wait for more bytes
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # mqtt5 panics (not an Exception) on some bad input
                raise ConnectionLostError(f"malformed packet from broker: {exc!r}") from exc
            offset += size
            if type(packet) is publish_type:
                # mqtt5's enums are not ints: compare with the member, never by truth.
                qos = 0 if packet.qos == qos0 else 1
                if auto_ack:
                    if qos and packet.packet_id is not None:
                        self.send_packet(mqtt5.PubAckPacket(packet.packet_id).write())
                else:
                    self.current_packet_id = packet.packet_id if qos else None
                try:
                    handler(packet.topic, packet.payload, qos)
                except Exception:
                    self.log.exception("message handler failed on %s", packet.topic)
            else:
                self.handle_control_packet(packet)
        self.rx_buffer = buffer[offset:] if offset < end else b""

    def ack(self, epoch: int, packet_ids: Sequence[int]) -> int:
        """With manual_ack: acknowledge QoS 1 messages the application has kept. `epoch` is
        `self.epoch` when they arrived: after a reconnect the broker resends what was not
        acknowledged, so acks for an earlier connection are dropped (the ids may be reused).
        Returns how many acks were sent."""
        if epoch != self.epoch or not self._connected.is_set() or not packet_ids:
            return 0
        self.send_packet(b"".join(mqtt5.PubAckPacket(pid).write() for pid in packet_ids))
        return len(packet_ids)

    def deliver(self, topic: str, payload: bytes, qos: int) -> None:
        """Hand one received PUBLISH to the handler; a handler's exception is logged, not
        raised. A subclass's own feed() calls it; override it to see every publish."""
        try:
            self.on_message(topic, payload, qos)
        except Exception:
            self.log.exception("message handler failed on %s", topic)

    def handle_control_packet(self, packet: mqtt5.Packet) -> None:
        """Handle a received packet that is not a PUBLISH: CONNACK, the acks of our requests,
        DISCONNECT (ConnectionLostError); PINGRESP and anything else need nothing."""
        if isinstance(packet, mqtt5.ConnAckPacket):
            self.epoch += 1
            if self._connack is not None and not self._connack.done():
                self._connack.set_result(packet)
        elif isinstance(packet, mqtt5.PubAckPacket | mqtt5.SubAckPacket | mqtt5.UnsubAckPacket):
            fut = self._pending.pop(packet.packet_id, None)
            if fut is not None and not fut.done():
                fut.set_result(packet)
        elif isinstance(packet, mqtt5.DisconnectPacket):
            raise ConnectionLostError(f"broker disconnected us: {packet.reason_code.name}")
        # PINGRESP and anything else need no action.


_base_deliver = MqttClient.deliver


def _kind(packet: mqtt5.Packet) -> str:
    return type(packet).__name__.removesuffix("Packet").upper()
