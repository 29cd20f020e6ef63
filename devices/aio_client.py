"""The terminal-side protocol client on asyncio: what the firmware simulator and softphone use.

Same protocol logic as :mod:`devices.client` (the sans-I/O :class:`TerminalSession` and the
store-and-forward :class:`BeaconQueue`), but on one event loop, so one process can run a thousand
terminals: the transport is the batched asyncio MQTT 5 client of :mod:`devices.mqtt` (one
protocol object per connection, writes batched per loop turn), retries are one timer per client
with requests outstanding, and PUBACKs are callbacks, not coroutines.

Two ways to use it:

- awaitable calls — ``await client.start()``, ``await client.request_floor(tg=…)``,
  ``client.send_frame(…)``, ``await client.stop()`` — for scripts, tests and the softphone;
- a :class:`TerminalHandler` that receives every classified message and connection change, and
  ``client.send(outgoing)`` — for the firmware state machine, which builds its own messages with
  ``client.session``.

Voice frames can be run through a :class:`FrameGate` (network impairment: drop or delay each
frame, both directions); control messages and beacons are never impaired (they ride on TCP and
QoS 1, where loss shows up as delay or a lost connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from codec.frame import VoiceFrame
from codec.opus import Pcm16
from devices.beacons import BeaconQueue
from devices.client_voice import ClientTalk, apaced, frame_schedule, voice_incoming
from devices.errors import ClientError, ConnectFailedError, ReplyTimeoutError
from devices.mqtt_link import AckCallback, TerminalMqtt
from devices.session import (
    CALL_PREFIX,
    Beacon,
    Dropped,
    FrameIn,
    GatewayStatus,
    Incoming,
    Outgoing,
    PendingRequest,
    Reply,
    RetryPolicy,
    TerminalSession,
    key_fields,
    target_key,
)
from devices.voice import VoiceSession
from transport.client import ClientOptions, Will
from transport.errors import ConnectRefusedError

log = logging.getLogger(__name__)


class TerminalHandler(Protocol):
    def on_connected(self, now: float) -> None: ...

    def on_disconnected(self, now: float) -> None: ...

    def on_incoming(self, incoming: Incoming, now: float) -> None: ...

    def on_expired(self, request: PendingRequest, now: float) -> None: ...


class FrameGate(Protocol):
    """Network impairment for voice frames: seconds of delay, or None to drop the frame."""

    def uplink(self, now: float) -> float | None: ...

    def downlink(self, now: float) -> float | None: ...


def wall_ms() -> int:
    return int(time.time() * 1000)


class AsyncTerminalClient(ClientTalk):
    """One terminal's MQTT session on the running event loop."""

    def __init__(
        self,
        device_id: str,
        secret: str | None,
        host: str,
        port: int,
        *,
        keep_alive: int = 30,
        retry: RetryPolicy | None = None,
        beacons: BeaconQueue | None = None,
        handler: TerminalHandler | None = None,
        gate: FrameGate | None = None,
        on_frame: Callable[[FrameIn, float], None] | None = None,
        battery: Callable[[], int | None] | None = None,
        signal: Callable[[], int | None] | None = None,
        position: Callable[[], tuple[float, float] | None] | None = None,
        decode_frames: bool = True,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
        tls: ssl.SSLContext | None = None,
        voice: VoiceSession | None = None,
    ) -> None:
        """`tls`: connect over TLS with this context (devices.tls.client_tls_context).

        `voice`: talk and listen with loss-adaptive protection (docs/protocol.md §9): received
        frames are played by it (one call at a time) and its receiver reports sent as they
        fall due; forwarded reports adapt what start_talk()/talk()/send_speech() encode. A
        handler that plays voice itself (the softphone, the simulator) leaves it None."""
        self.tls = tls
        self.voice = voice
        self.device_id = device_id
        self.secret = secret
        self.host, self.port, self.keep_alive = host, port, keep_alive
        self.session = TerminalSession(device_id, retry=retry, decode_frames=decode_frames)
        self.beacons = beacons if beacons is not None else BeaconQueue()
        self.handler = handler
        self.gate = gate
        self.on_frame = on_frame
        self.battery = battery or (lambda: None)
        self.signal = signal or (lambda: None)  # link quality 0-100 for a radio_check
        self.position = position or (lambda: None)  # (lat, lon) sent with an SOS
        self.backoff = (backoff_initial, backoff_max)
        self.clock = clock
        self.log = logger or log
        self.wanted_tgs: list[str] = []
        # An optional hot path for talkgroup voice: frame_tap(tg, buffer, start, stop) gets the
        # frame bytes buffer[start:stop] straight from the socket data and returns True when it
        # consumed the frame (a listening terminal of a large simulated fleet), False to let the
        # normal classification run. Set before launch(); not used when a FrameGate impairs
        # the downlink.
        self.frame_tap: Callable[[str, bytes, int, int], bool] | None = None
        self._tap_topics: dict[bytes, str] = {}
        self.frames: asyncio.Queue[FrameIn] = asyncio.Queue()
        self.control: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.mqtt: TerminalMqtt | None = None
        self.error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._connected = asyncio.Event()

    @property
    def is_connected(self) -> bool:
        return self.mqtt is not None and self.mqtt.is_connected

    # ---- connection -----------------------------------------------------------------------

    def _options(self) -> ClientOptions:
        will = self.session.will()
        return ClientOptions(
            host=self.host,
            port=self.port,
            client_id=self.device_id,
            username=self.device_id if self.secret is not None else None,
            password=self.secret,
            keep_alive=self.keep_alive,
            will=Will(will.topic, will.payload, will.qos, will.retain),
            subscriptions=self.session.base_subscriptions(),
            backoff_initial=self.backoff[0],
            backoff_max=self.backoff[1],
            tls=self.tls,
        )

    def launch(self) -> None:
        """Start connecting (and reconnecting) in the background; returns at once."""
        if self._task is not None and not self._task.done():
            return
        self.error = None
        self.mqtt = TerminalMqtt(
            self._options(),
            self._on_message,
            on_connect=self._on_connect,
            on_lost=self._on_lost,
            logger=self.log,
        )
        if self.frame_tap is not None and self.gate is None:
            self.mqtt.raw_tap = self._raw_tap
        self._task = asyncio.get_running_loop().create_task(
            self._run(self.mqtt), name=f"terminal-{self.device_id}"
        )

    async def _run(self, mqtt: TerminalMqtt) -> None:
        try:
            await mqtt.run()
        except ConnectRefusedError as exc:
            self.error = ConnectFailedError(exc.reason.name)
            self.log.warning("%s: %s", self.device_id, exc)
        except (TimeoutError, OSError) as exc:
            self.error = exc

    async def start(self, timeout: float = 10.0) -> None:
        """Connect and wait for the session to be up (status published, subscriptions made)."""
        self.launch()
        assert self._task is not None
        waiter = asyncio.ensure_future(self._connected.wait())
        done, _ = await asyncio.wait(
            {waiter, self._task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if waiter not in done:
            waiter.cancel()
            await self.go_offline()
            if isinstance(self.error, ClientError):
                raise self.error
            raise ConnectFailedError(str(self.error) if self.error else "timed out")

    async def _on_connect(self) -> None:
        mqtt = self.mqtt
        assert mqtt is not None
        now = self.clock()
        if self.wanted_tgs:
            await mqtt.subscribe(self.session.talkgroup_subscriptions(self.wanted_tgs))
        status = self.session.status("online", wall_ms(), battery=self.battery())
        mqtt.publish_nowait(status.topic, status.payload, qos=1, retain=True)
        if self.wanted_tgs:
            # The gateway forgets a terminal's affiliation when it goes offline.
            self.send_request(*self.session.affiliate(now, self.wanted_tgs))
        self.beacons.set_online(True)
        self.flush_beacons()
        self._connected.set()
        if self.handler is not None:
            self.handler.on_connected(now)

    def _on_lost(self) -> None:
        self._connected.clear()
        self.beacons.set_online(False)
        now = self.clock()
        for pending in self.session.forget_pending():
            waiter = self._waiters.pop(pending.id, None)
            if waiter is not None and not waiter.done():
                waiter.set_exception(ReplyTimeoutError(f"connection lost before {pending.type}"))
        if self.handler is not None:
            self.handler.on_disconnected(now)

    def drop_nowait(self) -> None:
        """Vanish abruptly without waiting for the session task to end."""
        if self.mqtt is not None:
            self.mqtt.abort()

    async def go_offline(self) -> None:
        """Vanish abruptly (no DISCONNECT: the broker publishes our Last Will)."""
        if self.mqtt is not None:
            self.mqtt.abort()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                await asyncio.wait_for(self._task, 5.0)
        self._task = None

    async def stop(self) -> None:
        """Clean power-off: status offline (reason shutdown), then DISCONNECT."""
        mqtt = self.mqtt
        if mqtt is not None and mqtt.is_connected:
            status = self.session.status(
                "offline", wall_ms(), battery=self.battery(), reason="shutdown"
            )
            with contextlib.suppress(Exception):
                await mqtt.publish(status.topic, status.payload, qos=1, retain=True, timeout=2.0)
        if mqtt is not None:
            await mqtt.close()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                await asyncio.wait_for(self._task, 5.0)
        self._task = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ---- sending --------------------------------------------------------------------------

    def send(self, out: Outgoing, on_ack: AckCallback | None = None) -> bool:
        """Publish now (batched into this loop turn's write); False when not connected."""
        mqtt = self.mqtt
        if mqtt is None:
            return False
        if on_ack is not None and out.qos:
            return mqtt.publish_acked(out.topic, out.payload, on_ack)
        return mqtt.publish_nowait(out.topic, out.payload, qos=out.qos, retain=out.retain)

    def send_request(self, pending: PendingRequest, message: Outgoing) -> None:
        """Send a request built with ``client.session`` and keep its retry timer running."""
        del pending
        self.send(message)
        self._arm_timer()

    def send_frame(
        self, frame: VoiceFrame, tg: str | None = None, *, key: str | None = None
    ) -> None:
        """A voice frame to a talkgroup (or the private call when tg is None, or a floor key
        ``tg`` / ``call:{peer}``), through the gate."""
        out = self.session.frame(frame, key or tg or CALL_PREFIX)
        delay = self.gate.uplink(self.clock()) if self.gate is not None else 0.0
        if delay is None:
            return
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self.send, out)
        else:
            self.send(out)

    async def send_burst(self, frames: Iterable[VoiceFrame], tg: str | None = None) -> int:
        """Send frames at real-time pace (each when its audio would have been captured)."""
        sent = 0
        async for frame in apaced(frame_schedule(frames), self.clock):
            self.send_frame(frame, tg)
            sent += 1
        return sent

    def _talk_now(self) -> float:
        return self.clock()

    def _send_talk_frame(self, frame: VoiceFrame, key: str) -> None:
        self.send_frame(frame, key=key)

    async def send_speech(
        self, pcm: Pcm16, burst: int, tg: str | None = None, call: str | None = None
    ) -> None:
        """Talk `pcm` (at the voice's sample rate) as one burst at real-time pace: each 20 ms
        is encoded when it would have been captured, so the protection follows the receiver
        reports forwarded meanwhile. Ends the burst (END)."""
        self.start_talk(burst, tg, call)
        try:
            async for chunk in apaced(self._voice().speech_chunks(pcm), self.clock):
                self.talk(chunk)
        finally:
            self.end_talk()

    def send_beacon(self, beacon: Beacon) -> None:
        self.beacons.take(beacon, self.clock())
        self.flush_beacons()

    def flush_beacons(self) -> None:
        for seq, beacon in self.beacons.to_send():
            out = self.session.beacon(beacon)
            if not self.send(out, self._beacon_ack(seq)):
                self.beacons.lost(seq)

    def _beacon_ack(self, seq: int) -> AckCallback:
        def on_ack(ok: bool | None) -> None:
            if ok is None:
                self.beacons.lost(seq)
                return
            self.beacons.acked(seq, ok)
            if self.is_connected:
                self.flush_beacons()

        return on_ack

    def subscribe_talkgroups(self, tgs: list[str]) -> Awaitable[list[int]] | None:
        mqtt = self.mqtt
        if mqtt is None or not mqtt.is_connected or not tgs:
            return None
        return mqtt.subscribe(self.session.talkgroup_subscriptions(tgs))

    def unsubscribe_talkgroups(self, tgs: list[str]) -> None:
        if self.mqtt is not None:
            topics = [t for t, _ in self.session.talkgroup_subscriptions(tgs)]
            self.mqtt.unsubscribe_nowait(topics)

    # ---- awaitable requests ---------------------------------------------------------------

    async def request(self, msg_type: str, **fields: Any) -> dict[str, Any]:
        """Send a request and await its reply (retried per the policy; ReplyTimeoutError)."""
        if not self.is_connected:
            raise ClientError(f"{self.device_id} is not connected")
        pending, message = self.session.request(msg_type, self.clock(), **fields)
        return await self._await(pending, message)

    async def affiliate(self, tgs: list[str]) -> dict[str, Any]:
        """Listen to `tgs`: subscribe first (no frame missed), affiliate, drop the rejected."""
        for tg in tgs:
            target_key(tg=tg)
        new = [tg for tg in tgs if tg not in self.wanted_tgs]
        self.wanted_tgs = list(dict.fromkeys([*self.wanted_tgs, *tgs]))
        subscribing = self.subscribe_talkgroups(new)
        if subscribing is not None:
            await subscribing
        return await self.request("affiliate", tgs=list(tgs))

    def affiliate_nowait(self, tgs: list[str] | tuple[str, ...]) -> None:
        """Subscribe and affiliate without waiting; the reply goes to the handler."""
        for tg in tgs:
            target_key(tg=tg)
        new = [tg for tg in tgs if tg not in self.wanted_tgs]
        self.wanted_tgs = list(dict.fromkeys([*self.wanted_tgs, *tgs]))
        if self.mqtt is not None:
            self.mqtt.subscribe_nowait(self.session.talkgroup_subscriptions(new))
        self.send_request(*self.session.affiliate(self.clock(), list(tgs)))

    def _gateway_status(self, status: GatewayStatus) -> None:
        """A gateway came (back) online: it has forgotten affiliations, so send ours again
        (once per announcement; a retained `online` right after connecting costs one
        idempotent affiliate)."""
        if not status.online or not self.wanted_tgs or not self.is_connected:
            return
        if any(p.type == "affiliate" for p in self.session.pending.values()):
            return
        self.send_request(*self.session.affiliate(self.clock(), self.wanted_tgs))

    def _affiliated(self, reply: Reply) -> None:
        """Keep exactly the accepted talkgroups subscribed (also for re-affiliation)."""
        raw = reply.body.get("tgs")
        accepted = [t for t in raw if isinstance(t, str)] if isinstance(raw, list) else []
        dropped = [tg for tg in self.wanted_tgs if tg not in accepted]
        self.wanted_tgs = accepted  # affiliation replaces the previous list (§5.1)
        self.unsubscribe_talkgroups(dropped)

    async def request_floor(
        self, tg: str | None = None, call: str | None = None, emergency: bool = False
    ) -> dict[str, Any]:
        key = target_key(tg, call)
        pending, message = self.session.floor_request(
            self.clock(), emergency=emergency, **key_fields(key)
        )
        return await self._await(pending, message)

    async def release_floor(self, tg: str | None = None, call: str | None = None) -> dict[str, Any]:
        key = target_key(tg, call)
        pending, message = self.session.floor_release(self.clock(), **key_fields(key))
        return await self._await(pending, message)

    async def sos(self, active: bool = True) -> dict[str, Any]:
        """Raise or cancel an SOS, with `position()` when the terminal has one (§5.1)."""
        pending, message = self.sos_request(active)
        return await self._await(pending, message)

    def sos_request(self, active: bool) -> tuple[PendingRequest, Outgoing]:
        """The SOS request to send (with `send_request`), carrying the position if known."""
        where = self.position()
        lat, lon = where if where is not None else (None, None)
        return self.session.sos(self.clock(), active, lat, lon)

    async def status_msg(
        self, code: str, text: str | None = None, incident: int | None = None
    ) -> dict[str, Any]:
        return await self.request("status_msg", code=code, text=text, incident=incident)

    async def report_incident(
        self,
        category: str,
        text: str,
        lat: float | None = None,
        lon: float | None = None,
        voice: bool = False,
    ) -> dict[str, Any]:
        """Report an incident (protocol §5.6); `voice`: the next talk burst is its voice note."""
        return await self.request(
            "report", category=category, text=text, lat=lat, lon=lon, voice=voice or None
        )

    def ack(self, command_id: str, ok: bool = True, detail: str | None = None) -> None:
        self.send(self.session.ack(command_id, ok, detail))

    def answer_radio_check(self, command_id: str) -> None:
        """Answer a `radio_check` with `battery()` and `signal()` (§5.4)."""
        self.send(self.session.ack(command_id, True, battery=self.battery(), signal=self.signal()))

    async def _await(self, pending: PendingRequest, message: Outgoing) -> dict[str, Any]:
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[pending.id] = waiter
        self.send_request(pending, message)
        try:
            return await waiter
        finally:
            self._waiters.pop(pending.id, None)

    async def wait_control(
        self, msg_type: str, timeout: float = 5.0, **match: Any
    ) -> dict[str, Any]:
        """Wait for an unsolicited control message of `msg_type` (others are discarded)."""
        async with asyncio.timeout(timeout):
            while True:
                body = await self.control.get()
                if body.get("type") == msg_type and all(body.get(k) == v for k, v in match.items()):
                    return body

    # ---- retries ---------------------------------------------------------------------------

    def _arm_timer(self) -> None:
        due = self.session.next_deadline()
        if due is None:
            return
        if self._timer is not None:
            if self._timer_at <= due:
                return
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_at = due
        self._timer = loop.call_later(max(0.0, due - self.clock()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self.clock()
        resend, expired = self.session.poll(now)
        for out in resend:
            self.send(out)
        for pending in expired:
            waiter = self._waiters.pop(pending.id, None)
            if waiter is not None and not waiter.done():
                waiter.set_exception(
                    ReplyTimeoutError(f"no reply to {pending.type} after {pending.tries} tries")
                )
            if self.handler is not None:
                self.handler.on_expired(pending, now)
        self._arm_timer()

    # ---- receiving --------------------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes, qos: int) -> None:
        incoming = self.session.on_message(topic, payload)
        if isinstance(incoming, FrameIn) and self.gate is not None:
            delay = self.gate.downlink(self.clock())
            if delay is None:
                return
            if delay > 0:
                asyncio.get_running_loop().call_later(delay, self._deliver, incoming)
                return
        self._deliver(incoming)

    def _raw_tap(self, topic: bytes, buffer: bytes, start: int, stop: int) -> bool:
        tg = self._tap_topics.get(topic)
        if tg is None:  # first time this topic: talkgroup downlink or not ("")
            tg = self.session.downlink_talkgroup(topic.decode(errors="replace")) or ""
            self._tap_topics[topic] = tg
        tap = self.frame_tap
        return bool(tg) and tap is not None and tap(tg, buffer, start, stop)

    def _deliver(self, incoming: Incoming) -> None:
        now = self.clock()
        answered = False
        if self.voice is not None:
            report = voice_incoming(self.voice, incoming, now)
            if report is not None:
                self.send(self.session.report(report))
        if isinstance(incoming, GatewayStatus):
            self._gateway_status(incoming)
        if isinstance(incoming, Reply):
            if incoming.request.type == "affiliate":
                self._affiliated(incoming)
            waiter = self._waiters.pop(incoming.request.id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(incoming.body)
                answered = True
        if self.handler is not None:
            self.handler.on_incoming(incoming, now)
        elif isinstance(incoming, FrameIn):
            if self.on_frame is not None:
                self.on_frame(incoming, now)
            else:
                self.frames.put_nowait(incoming)
        elif not isinstance(incoming, Dropped | GatewayStatus) and not answered:
            self.control.put_nowait(incoming.body)
