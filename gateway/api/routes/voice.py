"""Dispatcher voice: the talk and listen WebSockets (gateway/api/voice_stream.py documents
them) and spoken messages from text or a WAV file."""

from __future__ import annotations

from typing import Annotated

from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    HTTPException,
    Path,
    Query,
    Request,
    UploadFile,
    WebSocket,
)

from gateway.api.auth import CurrentAccount
from gateway.api.deps import RunnerDep, ServiceDep
from gateway.api.services.voice import SayJobNotFoundError, VoiceAccess, require_talker
from gateway.api.voice_schemas import SayJobOut
from gateway.api.voice_stream import serve_listen, serve_talk
from gateway.voice.service import VoiceService
from gateway.voice.speech import MAX_WAV_BYTES, SpeechError
from gateway.voice.targets import TargetError

router = APIRouter(prefix="/api/voice", tags=["voice"])


def get_voice_access(
    request: Request, service: ServiceDep, runner: RunnerDep, caller: CurrentAccount
) -> VoiceAccess:
    voice: VoiceService | None = getattr(request.app.state, "voice", None)
    if voice is None:
        raise HTTPException(503, "voice is not running")
    return VoiceAccess(voice, runner, service.audit, caller, service.incidents.placement)


VoiceDep = Annotated[VoiceAccess, Depends(get_voice_access)]


@router.websocket("/talk")
async def talk(websocket: WebSocket, target: Annotated[str, Query(max_length=80)] = "") -> None:
    await serve_talk(websocket, target)


@router.websocket("/listen")
async def listen(
    websocket: WebSocket, talkgroups: Annotated[str, Query(max_length=9000)] = ""
) -> None:
    await serve_listen(websocket, talkgroups)


@router.post("/say", status_code=202)
async def say(
    voice: VoiceDep,
    target: Annotated[str, Form(max_length=80, description="tg:<talkgroup>, device:<id>, all")],
    text: Annotated[str | None, Form(max_length=1000)] = None,
    lang: Annotated[str, Form(pattern="^(cmn|en)$")] = "cmn",
    wav: Annotated[UploadFile | None, File(description="a PCM WAV file")] = None,
) -> SayJobOut:
    """Speak `text` (espeak-ng, `lang`) or a WAV file to `target` as the caller's talker; 202
    once queued. Follow it with GET /api/voice/say/{id}."""
    require_talker(voice.caller)
    data = None
    if wav is not None:
        data = await wav.read(MAX_WAV_BYTES + 1)
    try:
        job = await voice.say(target, text, lang, data)
    except TargetError as exc:
        status = 403 if exc.reason == "not_in_scope" else 422
        raise HTTPException(status, f"{exc.reason}: {exc}") from exc
    except SpeechError as exc:
        raise HTTPException(422, str(exc)) from exc
    return SayJobOut.model_validate(job.view())


@router.get("/say/{job_id}")
async def say_job(job_id: Annotated[str, Path(max_length=40)], voice: VoiceDep) -> SayJobOut:
    try:
        return SayJobOut.model_validate(voice.job(job_id).view())
    except SayJobNotFoundError as exc:
        raise HTTPException(404, str(exc)) from exc
