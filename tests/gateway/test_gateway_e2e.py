"""The gateway end to end: real mosquitto, real gateway, terminals as scripted peers."""

from __future__ import annotations

import json
import queue
import threading
import time

import pytest

from codec.frame import VoiceFrame
from devices.client import ReceivedFrame, TerminalClient
from gateway.floor import FloorConfig
from tests.gateway.conftest import GatewayFactory, TerminalFactory

TG = "grid-01"


def frames(burst: int, count: int, first_seq: int = 0) -> list[VoiceFrame]:
    return [
        VoiceFrame(
            burst=burst,
            seq=first_seq + i,
            timestamp=(first_seq + i) * 960,
            frame_ms=20,
            packets=(bytes([i % 256]) * 80,),
            start=i == 0 and first_seq == 0,
        )
        for i in range(count)
    ]


def collect(client: TerminalClient, count: int, timeout: float = 5.0) -> list[ReceivedFrame]:
    got: list[ReceivedFrame] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        try:
            got.append(client.frames.get(timeout=max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            break
    return got


def quiet(client: TerminalClient, wait: float = 0.3) -> bool:
    """True if no frame arrives within `wait` seconds."""
    try:
        client.frames.get(timeout=wait)
    except queue.Empty:
        return True
    return False


@pytest.mark.parametrize("tcp", [False, True], ids=["gateway-on-unix-socket", "gateway-on-tcp"])
def test_grant_relay_queue_release(
    start_gateway: GatewayFactory, terminal: TerminalFactory, tcp: bool
) -> None:
    gw = start_gateway(tcp=tcp)
    a, b = terminal("T001", [TG]), terminal("T002", [TG])
    granted = a.request_floor(tg=TG)
    assert granted["type"] == "floor_granted" and granted["max_ms"] == 30_000
    taken = b.wait_control("floor_taken", tg=TG)
    assert taken["by"] == "T001" and taken["burst"] == granted["burst"]

    for frame in frames(granted["burst"], 25):
        a.send_frame(frame, tg=TG)
    got = collect(b, 25)
    assert [r.frame.seq for r in got] == list(range(25))
    assert all(r.topic == f"xixin/v1/tg/{TG}/down" for r in got)
    assert quiet(a), "the talker must not hear itself"

    queued = b.request_floor(tg=TG)
    assert queued == {"v": 1, "type": "floor_queued", "re": queued["re"], "tg": TG, "position": 1}
    assert a.release_floor(tg=TG)["type"] == "floor_released"
    b_granted = b.wait_control("floor_granted", tg=TG)
    assert b_granted["burst"] != granted["burst"]
    assert gw.call(lambda: gw.runner.counters.relayed) == 25


def test_queue_off_denies_busy(start_gateway: GatewayFactory, terminal: TerminalFactory) -> None:
    start_gateway(FloorConfig(queue_enabled=False))
    a, b = terminal("T001", [TG]), terminal("T002", [TG])
    assert a.request_floor(tg=TG)["type"] == "floor_granted"
    denied = b.request_floor(tg=TG)
    assert denied["type"] == "floor_deny" and denied["reason"] == "busy"


def test_dispatcher_preempts_officer_and_emergency_preempts_dispatcher(
    start_gateway: GatewayFactory, terminal: TerminalFactory
) -> None:
    start_gateway()
    officer, dispatcher = terminal("T001", [TG]), terminal("D001", [TG])
    assert officer.request_floor(tg=TG)["type"] == "floor_granted"

    reply = dispatcher.request_floor(tg=TG)
    assert reply["type"] == "floor_queued" and reply["position"] == 1
    revoke = officer.wait_control("floor_revoke", tg=TG)
    assert revoke["reason"] == "preempted" and revoke["grace_ms"] == 3000
    officer.release_floor(tg=TG)
    d_grant = dispatcher.wait_control("floor_granted", tg=TG)
    assert officer.wait_control("floor_taken", tg=TG)["priority"] == "dispatcher"

    emergency = officer.request_floor(tg=TG, emergency=True)
    assert emergency["type"] == "floor_queued"
    revoke = dispatcher.wait_control("floor_revoke", tg=TG, burst=d_grant["burst"])
    assert revoke["reason"] == "preempted"
    dispatcher.release_floor(tg=TG)
    officer.wait_control("floor_granted", tg=TG)
    assert dispatcher.wait_control("floor_taken", tg=TG)["priority"] == "emergency"


def test_max_burst_revokes(start_gateway: GatewayFactory, terminal: TerminalFactory) -> None:
    start_gateway(FloorConfig(max_burst_s=0.4))
    a, b = terminal("T001", [TG]), terminal("T002", [TG])
    assert a.request_floor(tg=TG)["type"] == "floor_granted"
    revoke = a.wait_control("floor_revoke", timeout=3.0)
    assert revoke["reason"] == "max_duration" and revoke["grace_ms"] == 0
    b.wait_control("floor_idle", tg=TG)


def test_non_holder_and_malformed_frames_dropped(
    start_gateway: GatewayFactory, terminal: TerminalFactory
) -> None:
    gw = start_gateway()
    a, b, c = terminal("T001", [TG]), terminal("T002", [TG]), terminal("T003", [TG])
    burst = a.request_floor(tg=TG)["burst"]
    for frame in frames(burst, 5):
        b.send_frame(frame, tg=TG)  # b does not hold the floor
    for junk in (b"", b"\x01", b"\x02" + bytes(20), b"\x01\x00" + bytes(10), b"x" * 5000):
        a.publish_raw(f"xixin/v1/tg/{TG}/up/T001", junk)
    a.publish_raw("xixin/v1/tg/nope/up/T001", b"x")
    for frame in frames(burst, 3):
        a.send_frame(frame, tg=TG)
    got = collect(c, 3)
    assert [r.frame.seq for r in got] == [0, 1, 2]
    assert quiet(c)
    counters = gw.call(lambda: dict(gw.runner.counters.dropped))
    assert counters == {"not_holder": 5, "malformed": 5, "unknown_talkgroup": 1}


def test_late_entry_gets_taken_and_following_frames(
    start_gateway: GatewayFactory, terminal: TerminalFactory
) -> None:
    start_gateway()
    a = terminal("T001", [TG])
    burst = a.request_floor(tg=TG)["burst"]
    stop = threading.Event()

    def talk() -> None:
        seq = 0
        while not stop.is_set():
            a.send_frame(frames(burst, 1, seq)[0], tg=TG)
            seq += 1
            time.sleep(0.02)

    talker = threading.Thread(target=talk)
    talker.start()
    try:
        time.sleep(0.2)
        c = terminal("T003")
        c.affiliate([TG])
        affiliated_at = time.monotonic()
        taken = c.wait_control("floor_taken", tg=TG)
        assert taken["by"] == "T001" and taken["burst"] == burst
        first = c.frames.get(timeout=2.0)
        assert first.frame.burst == burst
        # frames arrive every 20 ms; the first must come within about one interval (+ slack)
        assert first.received_at - affiliated_at < 0.1
    finally:
        stop.set()
        talker.join()


def test_frames_overtaken_by_the_release_are_relayed_until_the_next_talker(
    start_gateway: GatewayFactory, terminal: TerminalFactory
) -> None:
    """§6 release tail: the talker's last frames arriving after its `floor_release` (the gateway
    reads them on another connection) still reach the listeners, until the next talker talks."""
    gw = start_gateway()
    a, b, c = terminal("T001", [TG]), terminal("T002", [TG]), terminal("T003", [TG])
    burst = a.request_floor(tg=TG)["burst"]
    for frame in frames(burst, 3):
        a.send_frame(frame, tg=TG)
    assert [r.frame.seq for r in collect(c, 3)] == [0, 1, 2]
    assert a.release_floor(tg=TG)["type"] == "floor_released"
    c.wait_control("floor_idle", tg=TG)
    for frame in frames(burst, 2, 3):  # as if overtaken by the release
        a.send_frame(frame, tg=TG)
    assert [r.frame.seq for r in collect(c, 2)] == [3, 4]
    second = b.request_floor(tg=TG)["burst"]
    b.send_frame(frames(second, 1)[0], tg=TG)
    assert collect(c, 1)[0].frame.burst == second
    a.send_frame(frames(burst, 1, 5)[0], tg=TG)  # the next talker has talked: dropped
    deadline = time.monotonic() + 3
    while gw.call(lambda: gw.runner.counters.dropped.get("not_holder", 0)) < 1:
        assert time.monotonic() < deadline, "the old burst's frame was not dropped"
        time.sleep(0.02)
    assert quiet(c)


def test_stun_revokes_the_floor_at_once_and_empties_the_queue(
    start_gateway: GatewayFactory, terminal: TerminalFactory
) -> None:
    """§5.4/§6: a stunned talker gets floor_revoke(administrative, 0) and its frames stop being
    relayed; a stunned device waiting in a queue leaves it."""
    gw = start_gateway()
    a, b, c = terminal("T001", [TG]), terminal("T002", [TG]), terminal("T003", [TG])
    burst = a.request_floor(tg=TG)["burst"]
    assert b.request_floor(tg=TG)["type"] == "floor_queued"
    assert c.request_floor(tg=TG)["position"] == 2
    gw.call(lambda: gw.runner.send_command("T001", "stun"))
    revoke = a.wait_control("floor_revoke", tg=TG)
    assert (revoke["reason"], revoke["grace_ms"], revoke["burst"]) == ("administrative", 0, burst)
    assert b.wait_control("floor_granted", tg=TG)
    a.send_frame(frames(burst, 1, 0)[0], tg=TG)  # too late: dropped, never relayed
    deadline = time.monotonic() + 3
    while gw.call(lambda: gw.runner.counters.dropped.get("not_holder", 0)) < 1:
        assert time.monotonic() < deadline, "the stunned talker's frame was not dropped"
        time.sleep(0.02)
    gw.call(lambda: gw.runner.send_command("T003", "stun"))  # queued: leaves the queue
    assert b.release_floor(tg=TG)["type"] == "floor_released"
    assert gw.call(lambda: gw.runner.control.floors[TG].holder) is None
    assert gw.call(lambda: gw.runner.control.floors[TG].queue()) == []


def test_private_call(start_gateway: GatewayFactory, terminal: TerminalFactory) -> None:
    start_gateway()
    a, b, c = terminal("T001"), terminal("T004"), terminal("T002", [TG])
    granted = a.request_floor(call="T004")
    assert granted["type"] == "floor_granted" and granted["call"] == "T004"
    assert b.wait_control("floor_taken", call="T001")["by"] == "T001"
    for frame in frames(granted["burst"], 4):
        a.send_frame(frame)
    got = collect(b, 4)
    assert [r.frame.seq for r in got] == [0, 1, 2, 3]
    assert got[0].topic == "xixin/v1/dev/T004/voice/down"
    assert quiet(c)
    offline = a.request_floor(call="T999")
    assert offline["type"] == "floor_deny" and offline["reason"] == "no_such_device"


def test_last_will_marks_offline(start_gateway: GatewayFactory, terminal: TerminalFactory) -> None:
    gw = start_gateway()
    a = terminal("T001", [TG])

    def state() -> str:
        return gw.call(lambda: gw.runner.control.presence["T001"].state)

    deadline = time.monotonic() + 3
    while state() != "online" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert state() == "online"
    assert a.request_floor(tg=TG)["type"] == "floor_granted"
    a.drop()
    deadline = time.monotonic() + 5
    while state() != "offline" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state() == "offline"
    # the holder that vanished lost the floor
    assert gw.call(lambda: gw.runner.control.floors[TG].holder) is None


@pytest.mark.parametrize(
    ("tg", "reason"), [("grid-05", "not_member"), ("grid-99", "unknown_talkgroup")]
)
def test_a_floor_the_device_may_not_take_is_denied_and_releasing_it_is_idempotent(
    start_gateway: GatewayFactory, terminal: TerminalFactory, tg: str, reason: str
) -> None:
    """§5.2: a deny with its reason (the terminal's floor view leaves "requesting"), not an
    error; §5.1: floor_release always answers floor_released."""
    gw = start_gateway()
    a = terminal("T001")
    deny = a.request_floor(tg=tg)
    assert (deny["type"], deny["tg"], deny["reason"]) == ("floor_deny", tg, reason)
    assert a.release_floor(tg=tg)["type"] == "floor_released"
    assert gw.call(lambda: gw.runner.counters.floor["deny"]) == 1
    assert gw.call(lambda: sum(gw.runner.counters.rejected.values())) == 0
    assert a.request_floor(tg=TG)["type"] == "floor_granted"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"{not json", "bad_json"),
        (b"[1,2]", "bad_json"),
        (json.dumps({"v": 2, "type": "sos", "id": "x"}).encode(), "bad_version"),
        (json.dumps({"v": 1, "type": "teleport", "id": "x"}).encode(), "unknown_type"),
        (json.dumps({"v": 1, "type": "floor_request", "id": "x"}).encode(), "bad_field"),
        (b"{" + b" " * 5000 + b"}", "too_large"),
    ],
)
def test_bad_control_gets_error_reply(
    start_gateway: GatewayFactory, terminal: TerminalFactory, payload: bytes, code: str
) -> None:
    gw = start_gateway()
    a = terminal("T001")
    a.publish_raw("xixin/v1/dev/T001/ctrl/up", payload, qos=1)
    error = a.wait_control("error")
    assert error["code"] == code
    assert gw.call(lambda: gw.runner.counters.rejected[code]) == 1
    # and the gateway still works
    assert a.request_floor(tg=TG)["type"] == "floor_granted"


def test_disabled_and_unknown_devices_refused(
    start_gateway: GatewayFactory, terminal: TerminalFactory
) -> None:
    start_gateway()
    disabled, stranger = terminal("X001"), terminal("Z999")
    reply = disabled.request("floor_request", tg=TG)
    assert reply["type"] == "error" and reply["code"] == "disabled"
    stranger.send_control("floor_request", id="z-1", tg=TG)
    assert stranger.wait_control("error")["code"] == "unknown_device"


def test_mqtt_311_terminal_talks_to_mqtt5_terminal(
    start_gateway: GatewayFactory, terminal: TerminalFactory
) -> None:
    start_gateway()
    old = terminal("T001", [TG], mqtt_v5=False)
    new = terminal("T002", [TG])
    granted = old.request_floor(tg=TG)
    assert granted["type"] == "floor_granted"
    for frame in frames(granted["burst"], 5):
        old.send_frame(frame, tg=TG)
    assert [r.frame.seq for r in collect(new, 5)] == [0, 1, 2, 3, 4]
    old.release_floor(tg=TG)
    assert new.request_floor(tg=TG)["type"] == "floor_granted"
