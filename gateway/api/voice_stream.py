"""The console's voice WebSockets (docs/protocol.md §12): talking and listening.

Both refuse a handshake without credentials (401) or rights (403) like /api/events, check the
caller's session again every RECHECK_S and end with close code 1008 when it is gone.

`/api/voice/talk?target=tg:<talkgroup>|device:<id>|all` — the client sends text
`{"type":"press"}` / `{"type":"release"}` and binary 16 kHz mono s16le PCM (any whole number
of samples; 20 ms = 640 bytes is usual); the server sends `{"type":"floor","state":
"granted"|"queued"|"denied"|"preempted"|"released","by":str|null,"reason":str|null}` (plus
`burst` when granted, `position` when queued). A target outside the caller's scope is
answered `denied` (reason `not_in_scope`, `unknown_talkgroup`, `no_such_device` or
`bad_target`) and the socket closed (1008). Unreadable text is answered
`{"type":"error","message":…}` and otherwise ignored.

`/api/voice/listen?talkgroups=a,b` (none: every talkgroup in scope) — the server sends
`{"type":"hello","talkgroups":[…],"codec":"pcm16","rate":16000}` first, then
`burst_start`/`burst_end` JSON and binary audio: byte 0 the talkgroup's index in `talkgroups`
(255: a private call to the caller's own talker), byte 1 the codec (1 = PCM s16le 16 kHz
mono), then the samples. A browser that cannot keep up loses audio (counted in
`{"type":"dropped","messages":n}` notes), never the gateway's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any, Final

from fastapi import WebSocket, WebSocketDisconnect

from gateway.api.auth import resolve
from gateway.api.services.access import ForbiddenError, SignedIn
from gateway.api.services.voice import VoiceAccess, require_talker
from gateway.api.stream import CallerWatch, SessionRecheck, deny
from gateway.service import GatewayService
from gateway.voice.listener import ListenDecoder
from gateway.voice.service import VoiceService
from gateway.voice.speaker import Notice
from gateway.voice.targets import TargetError

LISTEN_QUEUE: Final = 500  # messages (about 5 s of one talkgroup's audio) waiting for a browser


async def _access(websocket: WebSocket) -> tuple[SignedIn | None, VoiceAccess | None]:
    caller = await resolve(websocket)
    service: GatewayService = websocket.app.state.service
    voice: VoiceService | None = getattr(websocket.app.state, "voice", None)
    if caller is None or voice is None or service.runner is None:
        return caller, None
    return caller, VoiceAccess(
        voice, service.runner, service.audit, caller, service.incidents.placement
    )


async def _unavailable(websocket: WebSocket, caller: SignedIn | None) -> None:
    """No caller: 401. A caller, but the gateway is not running (starting or stopping): 1011."""
    if caller is None:
        await deny(websocket, None)
        return
    await websocket.accept()
    await websocket.close(code=1011, reason="voice is not running")


async def serve_talk(websocket: WebSocket, target_text: str) -> None:
    caller, access = await _access(websocket)
    try:
        if caller is not None:
            require_talker(caller)
    except ForbiddenError:
        await deny(websocket, caller)
        return
    if caller is None or access is None:
        await _unavailable(websocket, caller)
        return
    await websocket.accept()
    try:
        target = access.target(target_text)
    except TargetError as exc:
        await websocket.send_json(Notice("denied", reason=exc.reason).message())
        await websocket.close(code=1008, reason=str(exc)[:120])
        return
    access.audit.record(caller.account.name, "voice_talk", target.text, "ok")
    notices: asyncio.Queue[Notice] = asyncio.Queue()
    async with access.voice.talker(caller.account.name) as link:
        speaker = access.voice.speaker(link, target, notices.put_nowait)
        forward = asyncio.create_task(_forward_notices(websocket, notices))
        try:
            await _talk_loop(websocket, link, speaker)
        except WebSocketDisconnect:
            pass
        finally:
            link.detach(speaker)
            forward.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await forward


async def _forward_notices(websocket: WebSocket, notices: asyncio.Queue[Notice]) -> None:
    while True:
        notice = await notices.get()
        await websocket.send_json(notice.message())


async def _talk_loop(websocket: WebSocket, link: Any, speaker: Any) -> None:
    recheck = SessionRecheck(websocket)
    while True:
        try:
            message = await asyncio.wait_for(websocket.receive(), recheck.wait_s())
        except TimeoutError:
            message = None
        if not await recheck.still_signed_in():
            return
        if message is None:
            continue
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        if data is not None:
            link.apply(speaker, speaker.pcm(data, time.monotonic()))
            continue
        try:
            body = json.loads(message.get("text") or "")
            kind = body.get("type") if isinstance(body, dict) else None
        except ValueError:
            kind = None
        if kind == "press":
            link.press(speaker)
        elif kind == "release":
            link.apply(speaker, speaker.release(time.monotonic()))
        else:
            await websocket.send_json(
                {"type": "error", "message": 'expected {"type":"press"} or {"type":"release"}'}
            )


async def serve_listen(websocket: WebSocket, talkgroups_text: str) -> None:
    caller, access = await _access(websocket)
    if caller is None or access is None:
        await _unavailable(websocket, caller)
        return
    try:
        talkgroups = access.listened(talkgroups_text)
    except ForbiddenError:
        await deny(websocket, caller)
        return
    except ValueError as exc:
        await websocket.accept()
        await websocket.close(code=1008, reason=str(exc)[:120])
        return
    own = caller.account.talker if caller.account.role.is_dispatcher else None
    decoder = access.voice.listen_decoder(talkgroups, own)
    out: asyncio.Queue[dict[str, Any] | bytes] = asyncio.Queue(LISTEN_QUEUE)
    dropped = [0]

    def on_message(topic: str, payload: bytes, qos: int) -> None:
        for item in decoder.handle(topic, payload):
            try:
                out.put_nowait(item)
            except asyncio.QueueFull:
                dropped[0] += 1

    client = access.voice.listen_client(decoder, on_message)
    await websocket.accept()
    runner = asyncio.create_task(client.run())
    try:
        await client.wait_connected(10)
        hello = {"type": "hello", "talkgroups": talkgroups, "codec": "pcm16", "rate": 16000}
        await websocket.send_json(hello)
        await _listen_loop(websocket, out, dropped, decoder)
    except WebSocketDisconnect:
        pass
    finally:
        await client.close()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await runner


async def _listen_loop(
    websocket: WebSocket,
    out: asyncio.Queue[dict[str, Any] | bytes],
    dropped: list[int],
    decoder: ListenDecoder,
) -> None:
    watch = CallerWatch(websocket)
    recheck = SessionRecheck(websocket)
    reported = 0
    try:
        while True:
            item = await watch.next(out, recheck.wait_s())
            if not await recheck.still_signed_in():
                return
            if item is None:
                continue
            if isinstance(item, bytes):
                await websocket.send_bytes(item)
            else:
                await websocket.send_json(item)
            if dropped[0] != reported:
                reported = dropped[0]
                await websocket.send_json({"type": "dropped", "messages": reported})
    finally:
        watch.close()
