"""The terminal-side protocol client (docs/protocol.md), on paho-mqtt.

Firmware integrators can follow this file as a reference implementation; the firmware simulator
and the tests use it as the scripted peer. paho runs its network loop on its own thread; replies
and downlink frames are handed to the caller through thread-safe queues and callbacks.
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from codec.frame import FrameError, VoiceFrame, encode_frame, parse_frame
from devices.errors import DevicesError

log = logging.getLogger(__name__)
ROOT = "xixin/v1"
FLOOR_REPLIES = frozenset({"floor_granted", "floor_queued", "floor_deny", "error"})


class ClientError(DevicesError):
    """The terminal client could not do what was asked."""


class ConnectFailedError(ClientError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"connection refused: {reason}")
        self.reason = reason


class ReplyTimeoutError(ClientError):
    """No reply to a request in time."""


@dataclass(frozen=True, slots=True)
class ReceivedFrame:
    topic: str
    frame: VoiceFrame
    received_at: float  # time.monotonic()


class TerminalClient:
    """One terminal's MQTT session."""

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
        logger: logging.Logger | None = None,
    ) -> None:
        self.device_id = device_id
        self.host, self.port, self.keep_alive = host, port, keep_alive
        self.log = logger or log
        self.on_frame = on_frame
        self.on_control = on_control
        protocol = mqtt.MQTTv5 if mqtt_v5 else mqtt.MQTTv311
        self._mqtt = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=device_id, protocol=protocol
        )
        if secret is not None:
            self._mqtt.username_pw_set(device_id, secret)
        self._mqtt.will_set(
            self.topic("status"),
            json.dumps({"v": 1, "state": "offline", "reason": "lost"}),
            qos=1,
            retain=True,
        )
        self._mqtt.on_connect = self._on_connect
        self._mqtt.on_message = self._on_message
        self._mqtt.on_disconnect = self._on_disconnect
        self._mqtt.on_subscribe = self._on_subscribe
        self._connected = threading.Event()
        self._connect_result: str | None = None
        self._ids = itertools.count(1)
        self._waiters: dict[str, queue.Queue[dict[str, Any]]] = {}
        self._subacks: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self.control: queue.Queue[dict[str, Any]] = queue.Queue()
        self.frames: queue.Queue[ReceivedFrame] = queue.Queue()
        self.own_bursts: set[int] = set()
        self.talkgroups: list[str] = []
        self.bad_frames = 0

    def topic(self, rest: str) -> str:
        return f"{ROOT}/dev/{self.device_id}/{rest}"

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
            subs = [(self.topic("ctrl/down"), 1), (self.topic("voice/down"), 0)]
            for tg in self.talkgroups:
                subs += [(f"{ROOT}/tg/{tg}/down", 0), (f"{ROOT}/tg/{tg}/ctrl", 1)]
            client.subscribe(subs)
            client.publish(
                self.topic("status"),
                json.dumps({"v": 1, "state": "online", "ts": int(time.time() * 1000)}),
                qos=1,
                retain=True,
            )
        self._connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self.log.info("%s disconnected: %s", self.device_id, reason)

    def disconnect(self) -> None:
        """Clean power-off: publish offline, then DISCONNECT (no Last Will)."""
        info = self._mqtt.publish(
            self.topic("status"),
            json.dumps({"v": 1, "state": "offline", "reason": "shutdown"}),
            qos=1,
            retain=True,
        )
        info.wait_for_publish(2.0)
        self._mqtt.disconnect()
        self._mqtt.loop_stop()

    def drop(self) -> None:
        """Lose the connection without DISCONNECT, so the broker fires the Last Will."""
        sock = self._mqtt.socket()
        self._mqtt.loop_stop()
        if sock is not None:
            sock.close()

    # ---- requests ---------------------------------------------------------------------------

    def request(self, msg_type: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        """Send a control request and wait for the reply carrying its id."""
        request_id = f"{self.device_id}-{next(self._ids)}"
        box: queue.Queue[dict[str, Any]] = queue.Queue()
        with self._lock:
            self._waiters[request_id] = box
        try:
            self.send_control(msg_type, id=request_id, **fields)
            try:
                return box.get(timeout=timeout)
            except queue.Empty as exc:
                raise ReplyTimeoutError(f"no reply to {msg_type} within {timeout} s") from exc
        finally:
            with self._lock:
                self._waiters.pop(request_id, None)

    def send_control(self, msg_type: str, **fields: Any) -> None:
        body = {"v": 1, "type": msg_type, **fields}
        self._mqtt.publish(self.topic("ctrl/up"), json.dumps(body), qos=1)

    def affiliate(self, talkgroups: list[str], timeout: float = 5.0) -> dict[str, Any]:
        """Listen to `talkgroups`: subscribe first (so no frame is missed), then affiliate."""
        new = [tg for tg in talkgroups if tg not in self.talkgroups]
        if new:
            subs = [
                (f"{ROOT}/tg/{tg}/{kind}", qos)
                for tg in new
                for kind, qos in (("down", 0), ("ctrl", 1))
            ]
            self._subscribe_and_wait(subs, timeout)
        reply = self.request("affiliate", timeout, tgs=talkgroups)
        accepted = list(reply.get("tgs", []))
        for tg in set(self.talkgroups) | set(new):
            if tg not in accepted:
                self._mqtt.unsubscribe([f"{ROOT}/tg/{tg}/down", f"{ROOT}/tg/{tg}/ctrl"])
        self.talkgroups = accepted
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
        timeout: float = 5.0,
    ) -> dict[str, Any]:
        reply = self.request("floor_request", timeout, tg=tg, call=call, emergency=emergency)
        if reply.get("type") == "floor_granted":
            self.own_bursts.add(int(reply["burst"]))
        return reply

    def release_floor(
        self, tg: str | None = None, call: str | None = None, timeout: float = 5.0
    ) -> dict[str, Any]:
        return self.request("floor_release", timeout, tg=tg, call=call)

    def send_frame(self, frame: VoiceFrame, tg: str | None = None) -> None:
        """Publish one voice frame to a talkgroup, or to the private call when tg is None."""
        topic = f"{ROOT}/tg/{tg}/up/{self.device_id}" if tg else self.topic("call/up")
        self._mqtt.publish(topic, encode_frame(frame), qos=0)

    def publish_raw(self, topic: str, payload: bytes, qos: int = 0) -> mqtt.MQTTMessageInfo:
        return self._mqtt.publish(topic, payload, qos=qos)

    # ---- receiving ------------------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        topic = msg.topic
        if topic.endswith("/voice/down") or (topic.endswith("/down") and "/tg/" in topic):
            try:
                frame = parse_frame(bytes(msg.payload))
            except FrameError:
                self.bad_frames += 1
                return
            if frame.burst in self.own_bursts and "/tg/" in topic:
                return  # our own voice, echoed by the broker (protocol §2)
            received = ReceivedFrame(topic, frame, time.monotonic())
            if self.on_frame is not None:
                self.on_frame(received)
            else:
                self.frames.put(received)
            return
        try:
            body = json.loads(msg.payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            self.log.warning("%s: unreadable control message on %s", self.device_id, topic)
            return
        if not isinstance(body, dict):
            return
        re_id = body.get("re")
        if isinstance(re_id, str):
            with self._lock:
                box = self._waiters.get(re_id)
            if box is not None:
                box.put(body)
                return
        if body.get("type") == "floor_granted" and "burst" in body:
            self.own_bursts.add(int(body["burst"]))
        if self.on_control is not None:
            self.on_control(body)
        self.control.put(body)

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
