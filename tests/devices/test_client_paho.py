"""The blocking paho client against a real mosquitto and a real gateway."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from codec.frame import VoiceFrame, encode_frame
from devices.client import ReceivedFrame, ReplyTimeoutError, TerminalClient
from devices.session import Beacon, RetryPolicy
from gateway.broker import ManagedBroker
from gateway.directory import build_directory
from gateway.runner import GatewayRunner, GatewaySettings
from protocol.org import default_org
from tests.gateway.harness import GatewayThread

DEVICES = [("T001", "grid-01", "officer", True), ("T002", "grid-01", "officer", True)]


class Spy:
    """A plain MQTT subscriber recording (topic, payload) in arrival order."""

    def __init__(self, broker: ManagedBroker, topic: str) -> None:
        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"spy-{time.time_ns()}")
        subscribed = threading.Event()
        self.client.on_message = lambda c, u, m: self.messages.put(
            (m.topic, bytes(m.payload), bool(m.retain))
        )
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        assert subscribed.wait(5)

    def take(self, count: int, timeout: float = 5.0) -> list[tuple[str, bytes, bool]]:
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                got.append(self.messages.get(timeout=left))
            except queue.Empty:
                break
        return got

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients(mosquitto: ManagedBroker) -> Iterator[list[TerminalClient]]:
    made: list[TerminalClient] = []
    yield made
    for client in made:
        try:
            client.disconnect()
        except Exception:
            client.drop()


def gateway(broker: ManagedBroker) -> GatewayThread:
    settings = GatewaySettings(broker=broker.address)
    return GatewayThread(GatewayRunner(settings, build_directory(default_org(), DEVICES)))


def test_status_online_last_will_and_clean_shutdown(
    mosquitto: ManagedBroker, clients: list[TerminalClient]
) -> None:
    spy = Spy(mosquitto, "xixin/v1/dev/+/status")
    try:
        a = TerminalClient("T001", None, mosquitto.host, mosquitto.port)
        a.battery = 77
        a.connect()
        ((topic, payload, _),) = spy.take(1)
        online = json.loads(payload)
        assert topic == "xixin/v1/dev/T001/status"
        assert online["state"] == "online" and online["battery"] == 77 and online["ts"] > 0
        a.drop()
        lost = json.loads(spy.take(1)[0][1])
        assert lost == {"v": 1, "state": "offline", "reason": "lost"}, "the Last Will"
        b = TerminalClient("T002", None, mosquitto.host, mosquitto.port)
        b.connect()
        spy.take(1)
        b.disconnect()
        shutdown = json.loads(spy.take(1)[0][1])
        assert shutdown["state"] == "offline" and shutdown["reason"] == "shutdown"
    finally:
        spy.close()


def test_request_is_tried_three_times_then_times_out(
    mosquitto: ManagedBroker, clients: list[TerminalClient]
) -> None:
    spy = Spy(mosquitto, "xixin/v1/dev/T001/ctrl/up")
    try:
        a = TerminalClient("T001", None, mosquitto.host, mosquitto.port, retry=RetryPolicy(3, 0.9))
        a.connect()
        clients.append(a)
        start = time.monotonic()
        with pytest.raises(ReplyTimeoutError, match="3 tries"):
            a.request_floor(tg="grid-01")
        assert 0.85 <= time.monotonic() - start < 2.0
        tries = [json.loads(p) for _, p, _ in spy.take(4, timeout=0.5)]
        assert len(tries) == 3 and len({t["id"] for t in tries}) == 1
    finally:
        spy.close()


def test_a_retry_reaches_a_gateway_that_came_up_late(
    mosquitto: ManagedBroker, clients: list[TerminalClient]
) -> None:
    a = TerminalClient("T001", None, mosquitto.host, mosquitto.port, retry=RetryPolicy(3, 3.0))
    a.connect()
    clients.append(a)
    gw = gateway(mosquitto)
    starter = threading.Timer(0.3, gw.start)
    starter.start()
    try:
        # The first try goes unanswered (no gateway yet); the second, a second later, is granted.
        start = time.monotonic()
        reply = a.request_floor(tg="grid-01")
        assert reply["type"] == "floor_granted"
        assert 0.9 <= time.monotonic() - start < 2.5
        assert a.session.counters.retries >= 1
    finally:
        starter.join()
        gw.stop()


def test_beacons_commands_and_floor(
    mosquitto: ManagedBroker, clients: list[TerminalClient]
) -> None:
    gw = gateway(mosquitto).start()
    spy = Spy(mosquitto, "xixin/v1/dev/T001/gps")
    try:
        a = TerminalClient("T001", None, mosquitto.host, mosquitto.port)
        b = TerminalClient("T002", None, mosquitto.host, mosquitto.port)
        for client in (a, b):
            client.connect()
            clients.append(client)
            assert client.affiliate(["grid-01", "grid-07"])["rejected"] == ["grid-07"]
        for n in range(20):
            a.send_beacon(Beacon(ts=1_700_000_000_000 + n, lat=30.87, lon=120.13))
        assert a.wait_beacons_acked(5.0) and a.beacons.counters.acked == 20
        got = [json.loads(p)["ts"] for _, p, _ in spy.take(20)]
        assert got == [1_700_000_000_000 + n for n in range(20)]

        assert a.sos(True)["type"] == "sos_ack"
        assert a.status_msg("on_scene", "at the gate")["type"] == "status_ack"
        gw.call(lambda: gw.runner.send_command("T001", "stun"))
        command = a.wait_control("command")
        assert command["cmd"] == "stun" and a.session.stunned
        a.ack(command["id"])
        assert a.request_floor(tg="grid-01")["reason"] == "stunned"
        gw.call(lambda: gw.runner.send_command("T001", "revive"))
        a.wait_control("command", cmd="revive")
        granted = a.request_floor(tg="grid-01", emergency=True)
        assert granted["type"] == "floor_granted"
        assert b.wait_control("floor_taken", tg="grid-01")["priority"] == "emergency"
        assert a.release_floor(tg="grid-01")["type"] == "floor_released"
        assert a.session.floor("grid-01").state in ("idle", "taken")
    finally:
        spy.close()
        gw.stop()


def test_real_time_burst_into_the_jitter_buffer(
    mosquitto: ManagedBroker, clients: list[TerminalClient]
) -> None:
    import numpy as np

    from codec.jitter import PlayoutKind
    from codec.opus import EncoderSettings
    from codec.stream import VoiceSender
    from devices.voice import VoiceSession

    gw = gateway(mosquitto).start()
    spy = Spy(mosquitto, "xixin/v1/dev/T002/ctrl/up")
    try:
        a = TerminalClient("T001", None, mosquitto.host, mosquitto.port)
        b = TerminalClient("T002", None, mosquitto.host, mosquitto.port, voice=VoiceSession())
        for client in (a, b):
            client.connect()
            clients.append(client)
            client.affiliate(["grid-01", "area-renxi"])
        burst = a.request_floor(tg="grid-01")["burst"]
        sender = VoiceSender(EncoderSettings(sample_rate=16000))
        sender.start_burst(burst, time.monotonic())
        t = np.arange(16000) / 16000  # one second of a 440 Hz tone
        frames = sender.push_pcm((6000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16), 0.0)
        frames.append(sender.end_burst(0.0))
        start = time.monotonic()
        assert a.send_burst(frames, tg="grid-01") == 51
        assert 0.95 <= time.monotonic() - start < 1.3, "real-time pace"
        kinds = []
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and kinds.count(PlayoutKind.NORMAL) < 50:
            chunk = b.pull_audio()
            kinds.append(chunk.item.kind)
            time.sleep(chunk.item.duration_ms / 1000.0)
        assert kinds.count(PlayoutKind.NORMAL) >= 49, "decoded out of the jitter buffer"
        assert b.scan is not None and b.scan.playing == "grid-01"
        # Reports went out by themselves while the burst arrived (§9.1), the last one at END.
        report = [json.loads(p) for _, p, _ in spy.take(3, timeout=2.0)]
        rr = [m for m in report if m["type"] == "rr"]
        assert rr and rr[0]["tg"] == "grid-01" and rr[0]["burst"] == burst
    finally:
        spy.close()
        gw.stop()


def test_reconnect_sends_status_then_a_retried_affiliate_then_stored_beacons(
    mosquitto: ManagedBroker, clients: list[TerminalClient]
) -> None:
    """§4 order on (re)connect, and §5.5: that `affiliate` is retried like any request (no
    gateway runs here, so nobody answers)."""
    spy = Spy(mosquitto, "xixin/v1/dev/T001/#")
    try:
        a = TerminalClient("T001", None, mosquitto.host, mosquitto.port, retry=RetryPolicy(3, 0.6))
        a.connect()
        clients.append(a)
        with pytest.raises(ReplyTimeoutError):
            a.affiliate(["grid-01"])  # sets what it listens to; unanswered
        a.drop()
        a.send_beacon(Beacon(ts=1_700_000_000_000, lat=30.87, lon=120.13))  # stored offline
        before = spy.take(10, timeout=1.0)  # up to the Last Will
        assert json.loads(before[-1][1])["state"] == "offline"
        a.connect()
        seen = [(t.rsplit("/", 2)[-2:], json.loads(p)) for t, p, _ in spy.take(5, timeout=3.0)]
        kinds = [
            body.get("type") or body.get("state") or ("beacon" if "lat" in body else "?")
            for _, body in seen
        ]
        assert kinds == ["online", "affiliate", "beacon", "affiliate", "affiliate"], kinds
        affiliates = [body for _, body in seen if body.get("type") == "affiliate"]
        assert len({b["id"] for b in affiliates}) == 1 and affiliates[0]["tgs"] == ["grid-01"]
    finally:
        spy.close()


def test_an_exception_in_a_frame_callback_does_not_stop_the_client(
    mosquitto: ManagedBroker, clients: list[TerminalClient]
) -> None:
    seen: list[int] = []

    def on_frame(received: ReceivedFrame) -> None:
        seen.append(received.frame.seq)
        if len(seen) == 1:
            raise RuntimeError("an integrator's bug")

    a = TerminalClient("T001", None, mosquitto.host, mosquitto.port, on_frame=on_frame)
    a.connect()
    clients.append(a)
    with pytest.raises(ReplyTimeoutError):
        a.affiliate(["grid-01"], timeout=0.3)  # no gateway: subscribed, unanswered
    talker = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="talker")
    talker.connect(mosquitto.host, mosquitto.port)
    talker.loop_start()
    try:
        for seq in (0, 1):
            frame = VoiceFrame(7, seq, seq * 960, 20, (b"\xf8",))
            talker.publish("xixin/v1/tg/grid-01/down", encode_frame(frame)).wait_for_publish(2)
        deadline = time.monotonic() + 3
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert seen == [0, 1]
    finally:
        talker.disconnect()
        talker.loop_stop()
