"""The sans-I/O terminal session: message formats, retries, floor views, echo suppression."""

from __future__ import annotations

import json

import pytest

from codec.frame import VoiceFrame, encode_frame
from devices.session import (
    Beacon,
    Command,
    Control,
    Dropped,
    FloorNews,
    FrameIn,
    GatewayStatus,
    PeerStatus,
    Reply,
    RetryPolicy,
    ScanList,
    SessionError,
    TerminalSession,
    target_key,
)

DOWN = "xixin/v1/dev/T001/ctrl/down"


def body(raw: bytes) -> dict[str, object]:
    value = json.loads(raw)
    assert isinstance(value, dict)
    return value


def down(session: TerminalSession, **fields: object) -> object:
    return session.on_message(DOWN, json.dumps({"v": 1, **fields}).encode())


def frame(burst: int, seq: int = 0) -> bytes:
    return encode_frame(
        VoiceFrame(
            burst=burst, seq=seq, timestamp=seq * 960, frame_ms=20, packets=(b"\xf8\xff\xfe",)
        )
    )


def test_topics_will_and_status() -> None:
    s = TerminalSession("T001", fw="test-1")
    assert s.base_subscriptions() == [
        (DOWN, 1),
        ("xixin/v1/dev/T001/voice/down", 0),
        ("xixin/v1/gw/+/status", 1),
    ]
    assert s.talkgroup_subscriptions(["grid-01"]) == [
        ("xixin/v1/tg/grid-01/down", 0),
        ("xixin/v1/tg/grid-01/ctrl", 1),
    ]
    will = s.will()
    assert (will.topic, will.qos, will.retain) == ("xixin/v1/dev/T001/status", 1, True)
    assert body(will.payload) == {"v": 1, "state": "offline", "reason": "lost"}
    status = s.status("online", 1_700_000_000_000, battery=130)
    assert body(status.payload) == {
        "v": 1,
        "state": "online",
        "ts": 1_700_000_000_000,
        "fw": "test-1",
        "battery": 100,
    }
    with pytest.raises(SessionError):
        s.status("asleep", 0)
    with pytest.raises(SessionError):
        TerminalSession("bad id!")


def test_request_retries_three_times_within_six_seconds() -> None:
    s = TerminalSession("T001")
    pending, message = s.floor_request(100.0, tg="grid-01")
    sent = body(message.payload)
    assert sent == {"v": 1, "type": "floor_request", "id": pending.id, "tg": "grid-01"}
    assert s.floor("grid-01").state == "requesting"
    assert s.poll(101.9) == ([], [])
    resend, expired = s.poll(102.0)
    assert resend == [message] and expired == []
    assert s.poll(103.0) == ([], [])
    resend, _ = s.poll(104.0)
    assert resend == [message]
    assert s.poll(105.9) == ([], []), "only 3 tries"
    resend, expired = s.poll(106.0)
    assert resend == [] and [p.id for p in expired] == [pending.id]
    assert s.floor("grid-01").state == "idle" and s.floor("grid-01").reason == "no_reply"
    assert s.counters.retries == 2 and s.counters.expired == 1
    assert s.next_deadline() is None


def test_reply_matches_the_request_and_stops_retries() -> None:
    s = TerminalSession("T001", retry=RetryPolicy(tries=3, window_s=3.0))
    pending, _ = s.floor_request(0.0, tg="grid-01", emergency=True)
    assert s.next_deadline() == 1.0
    got = down(s, type="floor_granted", re=pending.id, tg="grid-01", burst=7, max_ms=30000)
    assert isinstance(got, Reply) and got.request is pending
    view = s.floor("grid-01")
    assert (view.state, view.own_burst, view.holder, view.max_ms) == ("granted", 7, "T001", 30000)
    assert s.poll(10.0) == ([], [])
    # A duplicate reply (answer to a retry) is no longer a Reply.
    assert isinstance(down(s, type="floor_granted", re=pending.id, tg="grid-01", burst=7), Control)


def test_own_echo_is_dropped_others_frames_delivered() -> None:
    s = TerminalSession("T001")
    pending, _ = s.floor_request(0.0, tg="grid-01")
    down(s, type="floor_granted", re=pending.id, tg="grid-01", burst=9, max_ms=1000)
    assert s.on_message("xixin/v1/tg/grid-01/down", frame(9)) == Dropped("own_echo")
    # The same burst number on another talkgroup is someone else's voice.
    got = s.on_message("xixin/v1/tg/grid-02/down", frame(9))
    assert isinstance(got, FrameIn) and got.key == "grid-02"
    assert s.on_message("xixin/v1/tg/grid-01/down", b"\x09junk") == Dropped("bad_frame")
    assert s.counters.own_echo == 1 and s.counters.bad_frames == 1


def test_a_private_calls_frames_in_the_release_tail_stay_on_that_call() -> None:
    # voice/down names no peer: the call is found by its burst, also the one just released.
    s = TerminalSession("T001")
    voice = "xixin/v1/dev/T001/voice/down"
    down(s, type="floor_taken", call="T002", by="T002", burst=5, priority="normal")
    got = s.on_message(voice, frame(5))
    assert isinstance(got, FrameIn) and got.key == "call:T002"
    down(s, type="floor_idle", call="T002")
    got = s.on_message(voice, frame(5, 1))
    assert isinstance(got, FrameIn) and got.key == "call:T002"
    down(s, type="floor_taken", call="T002", by="T002", burst=6, priority="normal")
    got = s.on_message(voice, frame(5, 2))
    assert isinstance(got, FrameIn) and got.key == "call:T002"
    got = s.on_message(voice, frame(9))
    assert isinstance(got, FrameIn) and got.key == "call:unknown"


def test_a_call_granted_from_the_queue_keeps_the_peers_tail_on_that_call() -> None:
    # Queued behind the peer, we are granted at its release: floor_granted is all we get
    # (no floor_idle or floor_taken), and the peer's released burst may still be relayed.
    s = TerminalSession("T001")
    voice = "xixin/v1/dev/T001/voice/down"
    down(s, type="floor_taken", call="T002", by="T002", burst=3, priority="normal")
    pending, _ = s.floor_request(0.0, call="T002")
    down(s, type="floor_queued", re=pending.id, call="T002", position=1)
    down(s, type="floor_granted", re=pending.id, call="T002", burst=4, max_ms=1000)
    got = s.on_message(voice, frame(3, 1))
    assert isinstance(got, FrameIn) and got.key == "call:T002"


def test_the_echo_of_the_burst_before_is_dropped_too() -> None:
    # §6 release tail: the gateway may relay a released burst after the talker's next grant.
    s = TerminalSession("T001")
    pending, _ = s.floor_request(0.0, tg="grid-01")
    down(s, type="floor_granted", re=pending.id, tg="grid-01", burst=9, max_ms=1000)
    pending, _ = s.floor_release(0.5, tg="grid-01")
    down(s, type="floor_released", re=pending.id, tg="grid-01")
    pending, _ = s.floor_request(0.6, tg="grid-01")
    down(s, type="floor_granted", re=pending.id, tg="grid-01", burst=10, max_ms=1000)
    down(s, type="floor_granted", re=pending.id, tg="grid-01", burst=10, max_ms=900)  # a retry's
    assert s.on_message("xixin/v1/tg/grid-01/down", frame(9)) == Dropped("own_echo")
    assert s.on_message("xixin/v1/tg/grid-01/down", frame(10)) == Dropped("own_echo")
    # Another talker's burst in between is voice.
    assert isinstance(s.on_message("xixin/v1/tg/grid-01/down", frame(11)), FrameIn)


@pytest.mark.parametrize("decode", [True, False])
def test_red2_frames_are_voice_on_both_parse_paths(decode: bool) -> None:
    """Header-only parsing (the fleet's listeners) checks reserved flags, not RED/RED2."""
    s = TerminalSession("T001", decode_frames=decode)
    red2 = encode_frame(
        VoiceFrame(9, 12, 960 * 12, 20, (b"\x48now",), redundant=b"\x48one", redundant2=b"\x48two")
    )
    got = s.on_message("xixin/v1/tg/grid-01/down", red2)
    assert isinstance(got, FrameIn) and (got.burst, got.seq) == (9, 12)
    reserved = red2[:1] + bytes([red2[1] | 0x20]) + red2[2:]
    assert s.on_message("xixin/v1/tg/grid-01/down", reserved) == Dropped("bad_frame")
    assert s.counters.bad_frames == 1


def test_queue_then_late_grant_then_revoke() -> None:
    s = TerminalSession("T002")
    pending, _ = s.floor_request(0.0, tg="grid-01")
    topic = "xixin/v1/dev/T002/ctrl/down"
    queued = s.on_message(
        topic,
        json.dumps(
            {"v": 1, "type": "floor_queued", "re": pending.id, "tg": "grid-01", "position": 2}
        ).encode(),
    )
    assert isinstance(queued, Reply)
    assert (s.floor("grid-01").state, s.floor("grid-01").position) == ("queued", 2)
    s.on_message(topic, b'{"v":1,"type":"floor_queued","tg":"grid-01","position":1}')
    assert s.floor("grid-01").position == 1
    late = s.on_message(
        topic,
        json.dumps(
            {"v": 1, "type": "floor_granted", "re": pending.id, "tg": "grid-01", "burst": 4}
        ).encode(),
    )
    assert isinstance(late, Control) and s.floor("grid-01").state == "granted"
    s.on_message(
        topic,
        b'{"v":1,"type":"floor_revoke","tg":"grid-01","burst":4,'
        b'"reason":"preempted","grace_ms":3000}',
    )
    view = s.floor("grid-01")
    assert (view.state, view.reason, view.grace_ms) == ("revoked", "preempted", 3000)


def test_floor_broadcasts_late_entry_and_peer_status() -> None:
    s = TerminalSession("D001")
    news = s.on_message(
        "xixin/v1/tg/grid-07/ctrl",
        b'{"v":1,"type":"floor_taken","tg":"grid-07","by":"T101","burst":3,"priority":"normal"}',
    )
    assert isinstance(news, FloorNews)
    view = s.floor("grid-07")
    assert (view.state, view.holder, view.burst) == ("taken", "T101", 3)
    s.on_message("xixin/v1/tg/grid-07/ctrl", b'{"v":1,"type":"floor_idle","tg":"grid-07"}')
    assert (view.state, view.holder) == ("idle", None)
    late = s.on_message(
        "xixin/v1/dev/D001/ctrl/down",
        b'{"v":1,"type":"floor_taken","tg":"grid-01","by":"T001","burst":5,"priority":"normal"}',
    )
    assert isinstance(late, Control) and s.floor("grid-01").holder == "T001"
    assert s.on_message("xixin/v1/gw/gw1/status", b'{"v":1,"state":"online"}') == GatewayStatus(
        "gw1", True
    )
    assert s.on_message("xixin/v1/gw/gw1/status", b"") == GatewayStatus("gw1", False)
    peer = s.on_message("xixin/v1/dev/T001/status", b'{"v":1,"state":"online"}')
    assert peer == PeerStatus("T001", {"v": 1, "state": "online"})
    assert s.on_message("xixin/v1/dev/D001/ctrl/down", b"[1]") == Dropped("bad_json")
    assert s.on_message("elsewhere", b"{}") == Dropped("unknown_topic")
    assert s.counters.unknown_topic == 1, "every drop is counted"


def test_commands_stun_and_revive() -> None:
    s = TerminalSession("T001")
    stun = down(s, type="command", id="c1", cmd="stun")
    assert isinstance(stun, Command) and stun.cmd == "stun" and s.stunned
    down(s, type="command", id="c2", cmd="revive")
    assert not s.stunned
    assert body(s.ack("c2").payload) == {"v": 1, "type": "ack", "re": "c2", "ok": True}
    nack = body(s.ack("c3", ok=False, detail="busy").payload)
    assert nack["ok"] is False and nack["detail"] == "busy"


def test_affiliated_reply_records_accepted_talkgroups() -> None:
    s = TerminalSession("T001")
    pending, message = s.affiliate(0.0, ["grid-01", "all"])
    assert body(message.payload)["tgs"] == ["grid-01", "all"]
    down(s, type="affiliated", re=pending.id, tgs=["grid-01"], rejected=["all"])
    assert s.talkgroups == ("grid-01",)
    with pytest.raises(SessionError):
        s.affiliate(0.0, ["Grid 1"])


def test_beacon_round_trip_and_validation() -> None:
    beacon = Beacon(ts=1_700_000_000_123, lat=30.87, lon=120.13, acc=4.26, bat=80, sat=9)
    out = TerminalSession("T001").beacon(beacon)
    assert out.topic == "xixin/v1/dev/T001/gps" and out.qos == 1
    assert body(out.payload) == {
        "v": 1,
        "ts": 1_700_000_000_123,
        "lat": 30.87,
        "lon": 120.13,
        "acc": 4.3,
        "bat": 80,
        "sat": 9,
    }
    assert Beacon.from_json(out.payload).ts == beacon.ts
    with pytest.raises(SessionError):
        Beacon(ts=1, lat=91.0, lon=0.0)
    with pytest.raises(SessionError, match="not a time"):
        Beacon(ts=0, lat=30.87, lon=120.13)  # the gateway refuses ts 0 (bad_field)
    with pytest.raises(SessionError):
        Beacon.from_json(b'{"lat": 1}')


def test_target_keys_and_forget_pending() -> None:
    assert target_key(tg="grid-01") == "grid-01"
    assert target_key(call="T002") == "call:T002"
    for bad in ({}, {"tg": "a", "call": "b"}, {"tg": "A B"}, {"call": "x y"}):
        with pytest.raises(SessionError):
            target_key(**bad)  # type: ignore[arg-type]
    s = TerminalSession("T001")
    s.floor_request(0.0, call="T002")
    assert s.floor("call:T002").state == "requesting"
    assert len(s.forget_pending()) == 1 and s.floor("call:T002").state == "idle"


def test_scan_list_plays_selected_then_priority() -> None:
    scan = ScanList("grid-01", ["area-renxi"])
    assert scan.offer("all")
    assert scan.offer("area-renxi"), "a higher-ranked call interrupts"
    assert not scan.offer("all")
    assert scan.offer("grid-01")
    scan.ended("grid-01")
    assert scan.offer("all")


def test_malformed_gateway_replies_never_raise_or_corrupt_state() -> None:
    s = TerminalSession("T001")
    pending, _ = s.affiliate(0.0, ["grid-01"])
    got = down(s, type="affiliated", re=pending.id, tgs=5)  # not a list
    assert isinstance(got, Reply) and s.talkgroups == ()
    pending, _ = s.affiliate(0.0, ["grid-01"])
    down(s, type="affiliated", re=pending.id, tgs="grid-01")  # a string is not its letters
    assert s.talkgroups == ()
    request, _ = s.floor_request(0.0, tg="grid-01")
    down(s, type="floor_granted", re=request.id, tg="grid-01", burst=True, max_ms=1000)
    assert s.floor("grid-01").state == "requesting"  # a bool is not a burst id
    nested = b"[" * 2000 + b"]" * 2000
    assert s.on_message(DOWN, nested) == Dropped("bad_json")


@pytest.mark.parametrize("bad", ["T002\n", "T 2", "", "x" * 33])
def test_a_device_id_is_matched_whole_on_the_terminal_side(bad: str) -> None:
    # Protocol §2: the gateway refuses "T002\n" (fullmatch); so must the terminal side.
    with pytest.raises(SessionError):
        TerminalSession(bad)
    with pytest.raises(SessionError):
        target_key(call=bad)


def test_radio_check_answer_and_sos_position_messages() -> None:
    from devices.session import SessionError, TerminalSession

    session = TerminalSession("T001")
    answer = json.loads(session.ack("c4", True, battery=55, signal=70).payload)
    assert answer == {"v": 1, "type": "ack", "re": "c4", "ok": True, "battery": 55, "signal": 70}
    with pytest.raises(SessionError):
        session.ack("c5", battery=150)
    _, message = session.sos(0.0, True, 30.1, 104.2)
    body = json.loads(message.payload)
    assert (body["type"], body["lat"], body["lon"]) == ("sos", 30.1, 104.2)
    with pytest.raises(SessionError):
        session.sos(0.0, True, 30.1)
