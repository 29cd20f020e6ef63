"""The terminal-side protocol client (docs/protocol.md), blocking, on paho-mqtt.

Firmware integrators can follow this file as a reference implementation; tests use it as the
scripted peer. The protocol logic — message formats, request ids and retries (3 tries within 6 s),
floor views, echo suppression — lives in the sans-I/O :class:`devices.session.TerminalSession`;
beacons go through the store-and-forward :class:`devices.beacons.BeaconQueue`. This module only
moves bytes: paho runs its network loop on its own thread, and replies and downlink frames are
handed to the caller through thread-safe queues and callbacks. The asyncio twin used by the
firmware simulator and the softphone is :mod:`devices.aio_client`; talking and listening with
loss-adaptive protection, shared by both, is in :mod:`devices.client_voice`.

Connect sequence: CONNECT with the Last Will → CONNACK → subscribe `ctrl/down`, `voice/down` and
the affiliated talkgroups → publish status `online` → send queued beacons. Clean power-off
publishes status `offline` (reason `shutdown`) before DISCONNECT.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from codec.frame import VoiceFrame
from codec.opus import Pcm16
from codec.stream import PlayoutChunk
from devices.beacons import BeaconQueue
from devices.client_voice import ClientTalk, frame_schedule, paced, voice_incoming
from devices.errors import ClientError, ConnectFailedError, ReplyTimeoutError
from devices.session import (
    CALL_PREFIX,
    ROOT,
    Beacon,
    Command,
    Control,
    FloorNews,
    FrameIn,
    GatewayStatus,
    Outgoing,
    PeerStatus,
    PendingRequest,
    Reply,
    RetryPolicy,
    ScanList,
    TerminalSession,
    body_key,
    target_key,
)
from devices.voice import VoiceSession
from protocol import topics

log = logging.getLogger(__name__)
__all__ = [
    "ROOT",
    "ClientError",
    "ConnectFailedError",
    "ReceivedFrame",
    "ReplyTimeoutError",
    "TerminalClient",
]


@dataclass(frozen=True, slots=True)
class ReceivedFrame:
    topic: str
    frame: VoiceFrame
    received_at: float  # time.monotonic()


def _now_ms() -> int:
    return int(time.time() * 1000)


class TerminalClient(ClientTalk):
    """One terminal's MQTT session (blocking API, thread-safe)."""

    def __init__(
        self,
        device_id: str,
        secret: str | None,
        host: str,
        port: int,
        *,
        mqtt_v5: bool = True,
        keep_alive: int = 30,
        on_frame: Callable[[ReceivedFrame], None] | None = None,
        on_control: Callable[[dict[str, Any]], None] | None = None,
        retry: RetryPolicy | None = None,
        beacons: BeaconQueue | None = None,
        voice: VoiceSession | None = None,
        logger: logging.Logger | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """`tls`: connect over TLS with this context (devices.tls.client_tls_context). `voice`:
        play the scanned call (pull_audio), send its receiver reports as they fall due, and talk
        (start_talk, talk, send_speech) protected as the forwarded reports ask (§9)."""
        self.device_id = device_id
        self.host, self.port, self.keep_alive = host, port, keep_alive
        self.log = logger or log
        self.on_frame = on_frame
        self.on_control = on_control
        self.session = TerminalSession(device_id, retry=retry)
        self.beacons = beacons or BeaconQueue()
        self.battery: int | None = None
        #: link quality 0-100 reported to a `radio_check` (§5.4); None: not known
        self.signal: int | None = None
        #: where the terminal is (lat, lon), sent with an SOS (§5.1); None: no fix
        self.position: tuple[float, float] | None = None
        protocol = mqtt.MQTTv5 if mqtt_v5 else mqtt.MQTTv311
        self._mqtt = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=device_id, protocol=protocol
        )
        if secret is not None:
            self._mqtt.username_pw_set(device_id, secret)
        if tls is not None:
            self._mqtt.tls_set_context(tls)
        will = self.session.will()
        self._mqtt.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        # An exception in a callback (ours or an integrator's on_frame/on_control) is logged by
        # paho and the network thread goes on; otherwise it would die and the terminal go deaf.
        self._mqtt.suppress_exceptions = True
        self._mqtt.enable_logger(self.log)
        self._mqtt.on_connect = self._on_connect
        self._mqtt.on_message = self._on_message
        self._mqtt.on_disconnect = self._on_disconnect
        self._mqtt.on_subscribe = self._on_subscribe
        self._mqtt.on_publish = self._on_publish
        self._connected = threading.Event()
        self._connect_result: str | None = None
        self._waiters: dict[str, queue.Queue[dict[str, Any]]] = {}
        self._subacks: dict[int, threading.Event] = {}
        self._beacon_mids: dict[int, int] = {}
        self._early_acks: dict[int, bool] = {}  # PUBACKs that beat _flush_beacons to the mid
        self._publishing = 0  # _flush_beacons calls under way
        self._lock = threading.RLock()
        self._wanted_tgs: list[str] = []
        self.control: queue.Queue[dict[str, Any]] = queue.Queue()
        self.frames: queue.Queue[ReceivedFrame] = queue.Queue()
        self.voice = voice
        self.scan: ScanList | None = None

    def topic(self, rest: str) -> str:
        return topics.device(self.device_id, rest)

    @property
    def talkgroups(self) -> list[str]:
        return list(self.session.talkgroups)

    @property
    def bad_frames(self) -> int:
        return self.session.counters.bad_frames

    # ---- connection -----------------------------------------------------------------------

    def connect(self, timeout: float = 10.0) -> None:
        self._connected.clear()
        self._connect_result = None
        self._mqtt.connect(self.host, self.port, keepalive=self.keep_alive)
        self._mqtt.loop_start()
        if not self._connected.wait(timeout):
            self._mqtt.loop_stop()
            raise ConnectFailedError(self._connect_result or "timed out")
        if self._connect_result != "Success":
            self._mqtt.loop_stop()
            raise ConnectFailedError(self._connect_result or "unknown")

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connect_result = str(reason)
        if not reason.is_failure:
            # §4: subscribe -> status online -> affiliate -> beacons stored while offline.
            with self._lock:
                tgs = self._wanted_tgs or list(self.session.talkgroups)
                subs = self.session.base_subscriptions()
                subs += self.session.talkgroup_subscriptions(tgs)
                status = self.session.status("online", _now_ms(), battery=self.battery)
            client.subscribe(subs)
            client.publish(status.topic, status.payload, qos=status.qos, retain=status.retain)
            self._reaffiliate()
            with self._lock:
                self.beacons.set_online(True)
            self._flush_beacons()
        self._connected.set()

    def _reaffiliate(self) -> None:
        """Send `affiliate` for the talkgroups we listen to, retried per the policy (§5.5) by a
        short-lived thread, unless one is already on its way."""
        with self._lock:
            tgs = list(self._wanted_tgs)
            busy = any(p.type == "affiliate" for p in self.session.pending.values())
            if not tgs or busy:
                return
            pending, message = self.session.affiliate(time.monotonic(), tgs)
        self._publish(message)
        threading.Thread(target=self._retry_until_answered, args=(pending.id,), daemon=True).start()

    def _retry_until_answered(self, request_id: str) -> None:
        """Resend due retries (of any request; each is sent once) until this one is answered
        or its window is over. The reply itself lands in `control`."""
        while True:
            self._resend_due(time.monotonic())
            with self._lock:
                pending = self.session.pending.get(request_id)
            if pending is None:
                return
            time.sleep(min(1.0, max(0.01, self._next_attention(pending) - time.monotonic())))

    def _resend_due(self, now: float) -> None:
        """Publish the retries due now (the session hands each one out once)."""
        with self._lock:
            resend, _expired = self.session.poll(now)
        for out in resend:
            self._publish(out)

    def _next_attention(self, pending: PendingRequest) -> float:
        """When `pending` next needs looking at: its next try, else the end of its window."""
        more = pending.tries < self.session.retry.tries
        return min(pending.next_try if more else math.inf, pending.deadline)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            # paho itself re-sends unacknowledged QoS 1 publishes after reconnecting.
            self.beacons.set_online(False, keep_in_flight=True)
        if reason.is_failure:
            self.log.info("%s disconnected: %s", self.device_id, reason)

    def disconnect(self) -> None:
        """Clean power-off: publish offline, then DISCONNECT (no Last Will). Without a
        connection (the broker dropped it: a disabled account) there is nothing to tell."""
        status = self.session.status("offline", _now_ms(), battery=self.battery, reason="shutdown")
        info = self._mqtt.publish(status.topic, status.payload, qos=1, retain=True)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            info.wait_for_publish(2.0)
        self._mqtt.disconnect()
        self._mqtt.loop_stop()

    def drop(self) -> None:
        """Lose the connection without DISCONNECT, so the broker fires the Last Will."""
        sock = self._mqtt.socket()
        self._mqtt.loop_stop()
        if sock is not None:
            sock.close()
        with self._lock:
            self.beacons.set_online(False)

    # ---- requests ---------------------------------------------------------------------------

    def _publish(self, out: Outgoing) -> mqtt.MQTTMessageInfo:
        return self._mqtt.publish(out.topic, out.payload, qos=out.qos, retain=out.retain)

    def request(self, msg_type: str, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        """Send a control request and wait for its reply, retrying per the retry policy.

        `timeout` caps the wait (default: the policy's window, 6 s); ReplyTimeoutError after.
        """
        box: queue.Queue[dict[str, Any]] = queue.Queue()
        start = time.monotonic()
        with self._lock:
            pending, message = self.session.request(msg_type, start, **fields)
            self._waiters[pending.id] = box
        deadline = start + (self.session.retry.window_s if timeout is None else timeout)
        try:
            self._publish(message)
            while True:
                now = time.monotonic()
                self._resend_due(now)
                with self._lock:
                    alive = pending.id in self.session.pending
                if now >= deadline or (not alive and box.empty()):
                    try:
                        return box.get_nowait()
                    except queue.Empty:
                        raise ReplyTimeoutError(
                            f"no reply to {msg_type} {pending.id} after {pending.tries} tries "
                            f"in {now - start:.1f} s"
                        ) from None
                wake = min(deadline, self._next_attention(pending))
                try:
                    return box.get(timeout=max(0.001, wake - now))
                except queue.Empty:
                    continue
        finally:
            with self._lock:
                self._waiters.pop(pending.id, None)
                self.session.pending.pop(pending.id, None)

    def send_control(self, msg_type: str, **fields: Any) -> None:
        """Publish a control message as given (no id handling, no reply expected)."""
        body = {"v": 1, "type": msg_type, **fields}
        self._mqtt.publish(self.topic("ctrl/up"), json.dumps(body), qos=1)

    def affiliate(self, talkgroups: list[str], timeout: float | None = None) -> dict[str, Any]:
        """Listen to `talkgroups`: subscribe first (so no frame is missed), then affiliate."""
        with self._lock:
            current = list(self.session.talkgroups)
            self._wanted_tgs = list(talkgroups)
        new = [tg for tg in talkgroups if tg not in current]
        if new:
            self._subscribe_and_wait(self.session.talkgroup_subscriptions(new), timeout or 5.0)
        reply = self.request("affiliate", timeout, tgs=list(talkgroups))
        accepted = list(reply.get("tgs", []))
        with self._lock:
            self.session.talkgroups = tuple(accepted)
            self._wanted_tgs = accepted
            if accepted:  # scanning: the first talkgroup is the selected one
                self.scan = ScanList(accepted[0], accepted[1:])
                if self.voice is not None:
                    self.voice.scan = self.scan
        for tg in set(current) | set(new):
            if tg not in accepted:
                self._mqtt.unsubscribe([self.session.tg_down(tg), self.session.tg_ctrl(tg)])
        return reply

    def _subscribe_and_wait(self, subs: list[tuple[str, int]], timeout: float) -> None:
        done = threading.Event()
        with self._lock:
            result, mid = self._mqtt.subscribe(subs)
            if result != mqtt.MQTT_ERR_SUCCESS or mid is None:
                raise ClientError(f"subscribe failed: {mqtt.error_string(result)}")
            self._subacks[mid] = done
        if not done.wait(timeout):
            raise ReplyTimeoutError(f"no SUBACK within {timeout} s")

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self._lock:
            done = self._subacks.pop(mid, None)
        if done is not None:
            done.set()

    def request_floor(
        self,
        tg: str | None = None,
        call: str | None = None,
        emergency: bool = False,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        target_key(tg, call)
        return self.request("floor_request", timeout, tg=tg, call=call, emergency=emergency or None)

    def release_floor(
        self, tg: str | None = None, call: str | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        key = target_key(tg, call)
        with self._lock:
            view = self.session.floor(key)
            view.request_id = None
            if view.state != "taken":
                view.state = "idle"
        return self.request("floor_release", timeout, tg=tg, call=call)

    def sos(self, active: bool = True, timeout: float | None = None) -> dict[str, Any]:
        """Raise or cancel an SOS, with `position` when the terminal has one."""
        lat, lon = self.position if self.position is not None else (None, None)
        return self.request("sos", timeout, active=active, lat=lat, lon=lon)

    def status_msg(
        self, code: str, text: str | None = None, incident: int | None = None
    ) -> dict[str, Any]:
        return self.request("status_msg", None, code=code, text=text, incident=incident)

    def report_incident(
        self,
        category: str,
        text: str,
        lat: float | None = None,
        lon: float | None = None,
        voice: bool = False,
    ) -> dict[str, Any]:
        """Report an incident (protocol §5.6); `voice`: the next talk burst is its voice note."""
        return self.request(
            "report", None, category=category, text=text, lat=lat, lon=lon, voice=voice or None
        )

    def ack(self, command_id: str, ok: bool = True, detail: str | None = None) -> None:
        self._publish(self.session.ack(command_id, ok, detail))

    def answer_radio_check(self, command_id: str) -> None:
        """Answer a `radio_check` with `battery` and `signal` (§5.4); the client does this by
        itself when one arrives."""
        self._publish(self.session.ack(command_id, True, battery=self.battery, signal=self.signal))

    def send_report(self, report: dict[str, Any]) -> None:
        """Send a receiver report (`rr`), e.g. devices.values.report_message(report)."""
        self._publish(self.session.report(report))

    def send_frame(self, frame: VoiceFrame, tg: str | None = None) -> None:
        """Publish one voice frame to a talkgroup, or to the private call when tg is None."""
        self._publish(self.session.frame(frame, tg or CALL_PREFIX))

    def send_burst(
        self,
        frames: Iterable[VoiceFrame],
        tg: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> int:
        """Send frames at real-time pace: each when its audio would have been captured (a
        message of N x 20 ms leaves N x 20 ms after the previous one). Returns frames sent."""
        sent = 0
        for frame in paced(frame_schedule(frames), clock, sleep):
            self.send_frame(frame, tg)
            sent += 1
        return sent

    # ---- voice with loss-adaptive protection (needs `voice`) --------------------------------

    def _talk_now(self) -> float:
        return time.monotonic()

    def _talk_guard(self) -> AbstractContextManager[object]:
        return self._lock

    def _send_talk_frame(self, frame: VoiceFrame, key: str) -> None:
        self._publish(self.session.frame(frame, key))

    def pull_audio(self, now: float | None = None) -> PlayoutChunk:
        """The next chunk of received audio out of the jitter buffer."""
        voice = self._voice()
        with self._lock:
            return voice.pull(time.monotonic() if now is None else now)

    def send_speech(
        self,
        pcm: Pcm16,
        burst: int,
        tg: str | None = None,
        call: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Talk `pcm` (at the voice's sample rate) as one burst, at real-time pace: each
        20 ms chunk is encoded when it would have been captured, so the protection follows
        the receiver reports forwarded meanwhile. Ends the burst (END)."""
        self.start_talk(burst, tg, call)
        try:
            for chunk in paced(self._voice().speech_chunks(pcm), clock, sleep):
                self.talk(chunk)
        finally:
            self.end_talk()

    def publish_raw(self, topic: str, payload: bytes, qos: int = 0) -> mqtt.MQTTMessageInfo:
        return self._mqtt.publish(topic, payload, qos=qos)

    # ---- beacons ----------------------------------------------------------------------------

    def send_beacon(self, beacon: Beacon) -> None:
        """Queue a fix; it is published now if connected, else after reconnecting (in order)."""
        with self._lock:
            self.beacons.take(beacon, time.monotonic())
        self._flush_beacons()

    def _flush_beacons(self) -> None:
        """Publish what the queue's window allows. Called without our lock held: paho calls
        on_publish holding its own message lock, and on_publish takes ours — publishing under
        ours would take the two in the other order (a deadlock seen on a loaded machine)."""
        with self._lock:
            due = self.beacons.to_send()
            outgoing = [(seq, self.session.beacon(beacon)) for seq, beacon in due]
            if not outgoing:
                return
            self._publishing += 1
        try:
            for seq, message in outgoing:
                info = self._publish(message)
                with self._lock:
                    early = self._early_acks.pop(info.mid, None)
                    if early is None:
                        self._beacon_mids[info.mid] = seq
                    else:  # its PUBACK came before we noted its mid
                        self.beacons.acked(seq, ok=early)
        finally:
            with self._lock:
                self._publishing -= 1
                if not self._publishing:
                    self._early_acks.clear()  # PUBACKs of other messages, noted meanwhile

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            seq = self._beacon_mids.pop(mid, None)
            if seq is None:
                if self._publishing:  # maybe a beacon whose mid is not noted yet
                    self._early_acks[mid] = not reason.is_failure
                return
            self.beacons.acked(seq, ok=not reason.is_failure)
        self._flush_beacons()

    def wait_beacons_acked(self, timeout: float = 10.0) -> bool:
        """Block until the beacon queue is empty; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not len(self.beacons):
                    return True
            time.sleep(0.02)
        return False

    # ---- receiving ------------------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            incoming = self.session.on_message(msg.topic, bytes(msg.payload))
            box = self._waiters.get(incoming.request.id) if isinstance(incoming, Reply) else None
        now = time.monotonic()
        if self.voice is not None:  # the voice session ends a call in the scan list too
            with self._lock:
                report = voice_incoming(self.voice, incoming, now)
            if report is not None:
                self.send_report(report)
        elif isinstance(incoming, FloorNews) and incoming.body.get("type") == "floor_idle":
            key = body_key(incoming.body)
            if key is not None and self.scan is not None:
                with self._lock:
                    self.scan.ended(key)
        if isinstance(incoming, FrameIn):
            assert incoming.frame is not None  # this session decodes frames
            received = ReceivedFrame(msg.topic, incoming.frame, now)
            if self.on_frame is not None:
                self.on_frame(received)
            else:
                self.frames.put(received)
            return
        if isinstance(incoming, GatewayStatus):
            self._gateway_status(incoming)
            return
        if isinstance(incoming, Reply):
            if box is not None:
                box.put(incoming.body)
                return
            body = incoming.body
        elif isinstance(incoming, Control | FloorNews | PeerStatus | Command):
            body = incoming.body
            if isinstance(incoming, Command) and incoming.cmd == "radio_check":
                self.answer_radio_check(incoming.id)
        else:
            return  # own echo, malformed frame or unreadable JSON (counted by the session)
        if self.on_control is not None:
            self.on_control(body)
        self.control.put(body)

    def _gateway_status(self, status: GatewayStatus) -> None:
        """A gateway came (back) online and has forgotten affiliations: send ours again."""
        if status.online:
            self._reaffiliate()

    def wait_control(self, msg_type: str, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        """Wait for an unsolicited control message of `msg_type` (other ones are discarded)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ReplyTimeoutError(f"no {msg_type} {match} within {timeout} s")
            try:
                body = self.control.get(timeout=left)
            except queue.Empty:
                continue
            if body.get("type") == msg_type and all(body.get(k) == v for k, v in match.items()):
                return body
