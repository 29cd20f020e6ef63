"""The console speaker and listen decoder cores, sans-I/O (no broker, no sleeps)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from codec.frame import encode_frame, parse_frame
from codec.stream import VoiceSender
from gateway.voice.listener import CALL_INDEX, ListenDecoder
from gateway.voice.speaker import AHEAD_S, ANSWER_TIMEOUT_S, PREGRANT_S, Output, Speaker
from gateway.voice.targets import Target, TargetError, parse_target
from protocol import topics

TALKER = "xixin-u-g07"
TG = Target("tg", "grid-07")
PCM = (np.sin(np.arange(16000) / 8.0) * 8000).astype(np.int16)


def _speaker(holder: str | None = None, queue: tuple[str, ...] = ()) -> Speaker:
    return Speaker(TALKER, TG, lambda: (holder, queue), wall=lambda: 1000.0)


def _sent(out: Output) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for p in out.publishes:
        body = json.loads(p.payload) if p.topic.endswith("ctrl/up") else parse_frame(p.payload)
        found.append((p.topic, body))
    return found


def test_targets_parse_and_refuse() -> None:
    assert parse_target("all") == Target("tg", "all")
    assert parse_target("tg:grid-07").request_field == {"tg": "grid-07"}
    assert parse_target("device:T001").request_field == {"call": "T001"}
    for bad in ("", "tg:", "tg:Grid", "device:a b", "x:y", "all:"):
        try:
            parse_target(bad)
        except TargetError as exc:
            assert exc.reason == "bad_target"
        else:
            raise AssertionError(bad)


def test_press_grant_audio_release() -> None:
    s = _speaker()
    [(topic, request)] = _sent(s.press(0.0))
    assert topic == topics.ctrl_up(TALKER) and request["type"] == "floor_request"
    assert request["tg"] == "grid-07" and request["v"] == 1
    # audio before the grant is kept and sent first once granted
    assert s.pcm(PCM[:3200].tobytes(), 0.01).publishes == []
    out = s.control(
        {"type": "floor_granted", "re": request["id"], "tg": "grid-07", "burst": 9}, 0.02
    )
    assert [n.state for n in out.notices] == ["granted"] and out.notices[0].burst == 9
    frames = [body for topic, body in _sent(out)]
    assert len(frames) == 10 and all(f.burst == 9 for f in frames)  # 200 ms as 20 ms frames
    assert frames[0].seq == 0 and frames[0].timestamp == (1000 * 48000) & 0xFFFFFFFF
    out = s.pcm(PCM[3200:3520].tobytes(), 0.03)
    [(topic, frame)] = _sent(out)
    assert topic == topics.tg_up("grid-07", TALKER) and frame.seq == 10
    out = s.release(0.04)
    (_, end), (t2, release) = _sent(out)
    assert end.end and t2 == topics.ctrl_up(TALKER) and release["type"] == "floor_release"
    assert [n.state for n in out.notices] == ["released"] and s.state == "idle"
    # audio after the release goes nowhere
    assert s.pcm(PCM[:640].tobytes(), 0.05).publishes == [] and s.dropped_pcm == 640


def test_queued_denied_and_no_answer() -> None:
    s = _speaker(holder="T001")
    request = _sent(s.press(0.0))[0][1]
    out = s.control(
        {"type": "floor_queued", "re": request["id"], "tg": "grid-07", "position": 1}, 0.1
    )
    assert out.notices[0].message() == {
        "type": "floor", "state": "queued", "by": "T001", "reason": None, "position": 1,
    }  # fmt: skip
    s.pcm(PCM.tobytes(), 0.2)  # 1 s, then 1 s more: only PREGRANT_S are kept
    s.pcm(PCM.tobytes(), 0.3)
    s.pcm(PCM.tobytes(), 0.4)
    assert s.dropped_pcm == 3 * 16000 - PREGRANT_S * 16000
    out = s.control({"type": "floor_deny", "tg": "grid-07", "reason": "queue_timeout"}, 30.0)
    assert out.notices[0].state == "denied" and out.notices[0].reason == "queue_timeout"
    # another talkgroup's news is not ours
    s.press(31.0)
    assert s.control({"type": "floor_deny", "tg": "grid-01", "reason": "busy"}, 31.1).notices == []
    assert s.tick(31.0 + ANSWER_TIMEOUT_S - 0.01).notices == []
    [notice] = s.tick(31.0 + ANSWER_TIMEOUT_S).notices
    assert notice.state == "denied" and notice.reason == "no_answer"


def test_preempted_says_by_whom_and_gives_the_floor_back() -> None:
    s = _speaker(holder=TALKER, queue=("T009",))
    request = _sent(s.press(0.0))[0][1]
    s.control({"type": "floor_granted", "re": request["id"], "tg": "grid-07", "burst": 3}, 0.1)
    out = s.control({"type": "floor_revoke", "tg": "grid-07", "burst": 3,
                     "reason": "preempted", "grace_ms": 3000}, 0.5)  # fmt: skip
    (_, end), (_, release) = _sent(out)
    assert end.end and release["type"] == "floor_release"
    assert out.notices[0].message()["state"] == "preempted" and out.notices[0].by == "T009"
    # a grant arriving after we let go is handed back at once
    again = _speaker()
    rid = _sent(again.press(0.0))[0][1]["id"]
    again.release(0.1)
    [(_, back)] = _sent(
        again.control({"type": "floor_granted", "re": rid, "tg": "grid-07", "burst": 4}, 0.2)
    )
    assert back["type"] == "floor_release"


def test_listen_decoder_announces_and_decodes() -> None:
    described = {"T001": ("Officer Chen", {"lat": 30.1, "lon": 120.2})}
    decoder = ListenDecoder(
        ["grid-07", "area-renxi"], TALKER, lambda d: described.get(d, (None, None)),
        holder=lambda stream: "T005" if stream == "call" else None,
    )  # fmt: skip
    subs = dict(decoder.subscriptions())
    assert subs[topics.tg_down("area-renxi")] == 0 and subs[topics.tg_ctrl("grid-07")] == 1
    assert topics.voice_down(TALKER) in subs
    taken = {"type": "floor_taken", "tg": "grid-07", "by": "T001", "burst": 5}
    [start] = decoder.handle(topics.tg_ctrl("grid-07"), json.dumps(taken).encode())
    assert start == {
        "type": "burst_start", "talkgroup": "grid-07", "talker": "T001",
        "talker_name": "Officer Chen", "position": {"lat": 30.1, "lon": 120.2}, "burst": 5,
    }  # fmt: skip
    sender = VoiceSender()
    sender.start_burst(5, 0.0)
    frames = [*sender.push_pcm(PCM[:3200], 0.0), sender.end_burst(0.0)]
    audio = []
    for k, frame in enumerate(frames):
        if k == 3:
            continue  # lost on the way: concealed
        for item in decoder.handle(topics.tg_down("grid-07"), encode_frame(frame)):
            audio.append(item)
    chunks = [a for a in audio if isinstance(a, bytes)]
    assert all(c[0] == 0 and c[1] == 1 for c in chunks)
    assert (
        sum(len(c) - 2 for c in chunks) == sum(len(f.packets) for f in frames) * 640
    )  # hole filled
    assert audio[-1] == {"type": "burst_end", "talkgroup": "grid-07", "talker": "T001", "burst": 5}
    # a private call to the account: stream 255, talker from the floor
    sender.start_burst(2, 0.0)
    first = decoder.handle(
        topics.voice_down(TALKER), encode_frame(sender.push_pcm(PCM[:320], 0.0)[0])
    )
    start_call: Any = first[0]
    audio_call: Any = first[1]
    assert start_call["talker"] == "T005" and start_call["talkgroup"] == "call"
    assert audio_call[0] == CALL_INDEX
    assert decoder.handle(topics.tg_down("grid-07"), b"\x07junk") == [] and decoder.bad_frames == 1


def test_audio_faster_than_real_time_is_dropped() -> None:
    s = _speaker()
    rid = _sent(s.press(0.0))[0][1]["id"]
    s.control({"type": "floor_granted", "re": rid, "tg": "grid-07", "burst": 1}, 0.0)
    sent = 0
    for k in range(10):  # 10 s of audio within 0.1 s: only what may run ahead goes out
        sent += len(s.pcm(PCM.tobytes(), k * 0.01).publishes)
    assert sent == int((PREGRANT_S + AHEAD_S) * 50)
    assert s.dropped_pcm == 10 * 16000 - (PREGRANT_S + AHEAD_S) * 16000
    assert len(s.pcm(PCM[:320].tobytes(), 0.2).publishes) == 1  # time refills it
