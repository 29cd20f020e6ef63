"""Dispatcher voice through the API on a real gateway: talking as the account's talker over
the WebSocket (floor control, scope, pre-emption, private calls), listening, spoken messages."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse, WebSocketTestSession

from codec.frame import VoiceFrame
from codec.opus import Pcm16
from devices.client import ReceivedFrame, TerminalClient
from gateway.service import GatewayService
from tests.gateway.signin import ORIGIN, sign_in
from tests.gateway.voice.audio import best_alignment, decode_frames, pesq_score
from tests.gateway.voice.conftest import TerminalMaker, wait_known

CHUNK = 640  # 20 ms of 16 kHz s16le
WS = "ws://localhost"


def floor(ws: WebSocketTestSession) -> dict[str, Any]:
    message: dict[str, Any] = ws.receive_json()
    assert message["type"] == "floor", message
    return message


def send_speech(ws: WebSocketTestSession, pcm: Pcm16) -> None:
    """At the pace a microphone gives it (the gateway drops audio far ahead of real time)."""
    data = pcm.astype("<i2").tobytes()
    start = time.monotonic()
    for k, offset in enumerate(range(0, len(data), CHUNK)):
        ahead = start + k * 0.02 - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        ws.send_bytes(data[offset : offset + CHUNK])


def burst_frames(terminal: TerminalClient, timeout: float = 15.0) -> list[VoiceFrame]:
    """The frames of the next whole burst the terminal receives (until END)."""
    frames: list[VoiceFrame] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        received: ReceivedFrame = terminal.frames.get(timeout=deadline - time.monotonic())
        frames.append(received.frame)
        if received.frame.end:
            return frames
    raise AssertionError(f"no END within {timeout} s ({len(frames)} frames)")


def dispatcher(http: TestClient, service: GatewayService, role: str, name: str) -> str:
    sign_in(http, service, role, name)
    wait_known(service, f"xixin-u-{name}")
    return name


def test_grid_dispatcher_talks_to_its_grid_and_the_terminal_hears_the_speech(
    voice_api: tuple[TestClient, GatewayService], terminals: TerminalMaker, speech: Pcm16
) -> None:
    http, service = voice_api
    officer = terminals("T701", "grid-07", ["grid-07"])
    dispatcher(http, service, "grid:grid-07", "g07")
    with http.websocket_connect(f"{WS}/api/voice/talk?target=tg:grid-07") as ws:
        ws.send_text(json.dumps({"type": "press"}))
        granted = floor(ws)
        assert granted["state"] == "granted" and granted["burst"] >= 1
        taken = officer.wait_control("floor_taken", tg="grid-07")
        assert taken["by"] == "xixin-u-g07" and taken["priority"] == "dispatcher"
        send_speech(ws, speech)
        ws.send_text(json.dumps({"type": "release"}))
        assert floor(ws)["state"] == "released"
        frames = burst_frames(officer)
    heard = decode_frames(frames)
    score, offset = best_alignment(speech, heard)
    quality = pesq_score(speech, heard[: len(speech)], offset)
    print(f"console -> terminal: correlation {score:.3f}, PESQ {quality}")
    assert len(heard) >= len(speech) * 0.95
    assert score > 0.7, score
    # The burst is recorded under the account's talker id.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        rows = http.get("/api/recordings", params={"talker": "xixin-u-g07"}).json()
        if rows:
            break
        time.sleep(0.1)
    assert rows and rows[0]["floor_key"] == "grid-07"
    started = rows[0]["started_at"]
    by_tg = {"talkgroup": "grid-07", "since": started, "until": started + 1}
    assert [r["id"] for r in http.get("/api/recordings", params=by_tg).json()] == [rows[0]["id"]]
    assert http.get("/api/recordings", params={"talkgroup": "grid-02"}).json() == []
    assert http.get("/api/recordings", params={**by_tg, "until": started}).json() == []
    audio = http.get(f"/api/recordings/{rows[0]['id']}/audio")
    assert audio.status_code == 200 and audio.content.startswith(b"OggS")


def test_a_grid_dispatcher_cannot_talk_to_another_grid_nor_to_the_all_call(
    voice_api: tuple[TestClient, GatewayService], terminals: TerminalMaker
) -> None:
    http, service = voice_api
    dispatcher(http, service, "grid:grid-07", "g07")
    for target in ("tg:grid-02", "all", "tg:area-renxi", "tg:nope"):
        with http.websocket_connect(f"{WS}/api/voice/talk?target={target}") as ws:
            denied = floor(ws)
            assert denied["state"] == "denied", (target, denied)
            assert denied["reason"] in ("not_in_scope", "unknown_talkgroup"), denied
    terminals("T201", "grid-02", ["grid-02"])
    with http.websocket_connect(f"{WS}/api/voice/talk?target=device:T201") as ws:
        assert floor(ws)["reason"] == "not_in_scope"
    answer = http.post("/api/voice/say", data={"target": "tg:grid-02", "text": "hello"})
    assert answer.status_code == 403


def test_a_viewer_has_no_talk_socket_and_nobody_listens_unsigned(
    voice_api: tuple[TestClient, GatewayService],
) -> None:
    http, service = voice_api
    sign_in(http, service, "viewer", "watcher")
    with (
        pytest.raises(WebSocketDenialResponse) as refused,
        http.websocket_connect(f"{WS}/api/voice/talk?target=all"),
    ):
        pass
    assert refused.value.status_code == 403
    with (
        pytest.raises(WebSocketDenialResponse) as refused,
        http.websocket_connect(f"{WS}/api/voice/listen"),
    ):
        pass
    assert refused.value.status_code == 403  # a viewer may not listen either
    http.cookies.clear()
    with (
        pytest.raises(WebSocketDenialResponse) as refused,
        http.websocket_connect(f"{WS}/api/voice/listen"),
    ):
        pass
    assert refused.value.status_code == 401


def test_the_dispatcher_preempts_a_talking_officer_and_is_told_whom(
    voice_api: tuple[TestClient, GatewayService], terminals: TerminalMaker
) -> None:
    http, service = voice_api
    officer = terminals("T702", "grid-07", ["grid-07"])
    assert officer.request_floor(tg="grid-07")["type"] == "floor_granted"
    dispatcher(http, service, "grid:grid-07", "g07")
    with http.websocket_connect(f"{WS}/api/voice/talk?target=tg:grid-07") as ws:
        ws.send_text(json.dumps({"type": "press"}))
        queued = floor(ws)
        assert queued["state"] == "queued" and queued["by"] == "T702", queued
        revoke = officer.wait_control("floor_revoke", tg="grid-07")
        assert revoke["reason"] == "preempted"
        officer.release_floor(tg="grid-07")
        assert floor(ws)["state"] == "granted"
        # An emergency pre-empts the dispatcher in turn: the console is told by whom.
        officer.request("floor_request", tg="grid-07", emergency=True)
        preempted = floor(ws)
        assert preempted["state"] == "preempted" and preempted["by"] == "T702", preempted


def test_a_private_call_to_a_device_and_listening_to_its_answer(
    voice_api: tuple[TestClient, GatewayService], terminals: TerminalMaker, speech: Pcm16
) -> None:
    http, service = voice_api
    officer = terminals("T703", "grid-07", ["grid-07"])
    dispatcher(http, service, "grid:grid-07", "g07")
    with (
        http.websocket_connect(f"{WS}/api/voice/listen?talkgroups=grid-07") as listen,
        http.websocket_connect(f"{WS}/api/voice/talk?target=device:T703") as ws,
    ):
        hello = listen.receive_json()
        assert hello["talkgroups"] == ["grid-07"] and hello["rate"] == 16000
        ws.send_text(json.dumps({"type": "press"}))
        assert floor(ws)["state"] == "granted"
        send_speech(ws, speech[:16000])
        ws.send_text(json.dumps({"type": "release"}))
        received = officer.frames.get(timeout=10)
        assert received.topic == "xixin/v1/dev/T703/voice/down"
        burst_frames(officer)
        # The officer answers in the call; the console hears it on stream 255.
        grant = officer.request_floor(call="xixin-u-g07")
        assert grant["type"] == "floor_granted"
        officer.send_burst(_frames_of(speech[:16000], grant["burst"]), tg=None)
        start = _next_json(listen, "burst_start")
        assert start["talkgroup"] == "call" and start["talker"] == "T703"
        audio = _collect_audio(listen, 255)
        assert len(audio) > 12000


def _frames_of(pcm: Pcm16, burst: int) -> list[VoiceFrame]:
    from codec.stream import VoiceSender

    sender = VoiceSender()
    sender.start_burst(burst, 0.0)
    frames = sender.push_pcm(pcm, 0.0)
    return [*frames, sender.end_burst(0.0)]


def _next_json(ws: WebSocketTestSession, kind: str) -> dict[str, Any]:
    for _ in range(1000):
        message = ws.receive()
        if message.get("text"):
            body: dict[str, Any] = json.loads(message["text"])
            if body["type"] == kind:
                return body
    raise AssertionError(f"no {kind}")


def _collect_audio(ws: WebSocketTestSession, index: int) -> Pcm16:
    chunks: list[Pcm16] = []
    while True:
        message = ws.receive()
        if message.get("bytes"):
            data = message["bytes"]
            assert data[0] == index and data[1] == 1
            chunks.append(np.frombuffer(data[2:], dtype="<i2"))
        elif message.get("text") and json.loads(message["text"])["type"] == "burst_end":
            return np.concatenate(chunks)


def test_listening_decodes_an_officer_and_says_who_talks(
    voice_api: tuple[TestClient, GatewayService], terminals: TerminalMaker, speech: Pcm16
) -> None:
    http, service = voice_api
    officer = terminals("T704", "grid-07", ["grid-07"])
    dispatcher(http, service, "grid:grid-07", "g07")
    with http.websocket_connect(f"{WS}/api/voice/listen") as listen:
        hello = listen.receive_json()
        assert hello["talkgroups"] == ["grid-07"]  # everything in a grid dispatcher's scope
        grant = officer.request_floor(tg="grid-07")
        officer.send_burst(_frames_of(speech, grant["burst"]), tg="grid-07")
        start = _next_json(listen, "burst_start")
        assert start["talker"] == "T704" and start["talker_name"] == "name of T704"
        heard = _collect_audio(listen, 0)
    score, _ = best_alignment(speech, heard)
    print(f"terminal -> console (server decoding): correlation {score:.3f}")
    assert score > 0.7


def test_say_speaks_text_to_the_grid(
    voice_api: tuple[TestClient, GatewayService], terminals: TerminalMaker
) -> None:
    http, service = voice_api
    officer = terminals("T705", "grid-07", ["grid-07"])
    dispatcher(http, service, "grid:grid-07", "g07")
    answer = http.post(
        "/api/voice/say", data={"target": "tg:grid-07", "text": "巡逻队请注意", "lang": "cmn"}
    )
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert job["state"] in ("queued", "waiting", "talking") and job["duration_s"] > 0.5
    frames = burst_frames(officer)
    assert len(frames) * 0.02 >= job["duration_s"] * 0.9
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job = http.get(f"/api/voice/say/{job['id']}").json()
        if job["state"] == "done":
            break
        time.sleep(0.05)
    assert job["state"] == "done" and job["burst"] >= 1
    bad = http.post("/api/voice/say", data={"target": "tg:grid-07"})
    assert bad.status_code == 422
    bad_wav = http.post(
        "/api/voice/say", data={"target": "tg:grid-07"}, files={"wav": ("x.wav", b"RIFFjunk")}
    )
    assert bad_wav.status_code == 422


@pytest.mark.parametrize("path", ["/api/voice/talk?target=tg:grid-07", "/api/voice/listen"])
def test_an_open_voice_socket_ends_when_its_caller_signs_out(
    voice_api: tuple[TestClient, GatewayService], path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.api.stream.RECHECK_S", 0.2)
    http, service = voice_api
    dispatcher(http, service, "grid:grid-07", "out-talk" if "talk" in path else "out-listen")
    with http.websocket_connect(f"{WS}{path}") as ws:
        if "listen" in path:
            assert ws.receive_json()["type"] == "hello"
        assert http.post("/api/auth/logout", headers={"Origin": ORIGIN}).status_code == 204
        message = ws.receive()
        while message["type"] != "websocket.close":  # listening may still send what it heard
            message = ws.receive()
        assert message["code"] == 1008
