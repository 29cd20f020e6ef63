"""Speech for dispatcher voice without a microphone: text spoken by espeak-ng (Mandarin `cmn`,
English `en`) or an uploaded WAV file, as 16 kHz mono PCM."""

from __future__ import annotations

import asyncio
import shutil
from typing import Final, Literal

from codec.errors import CodecError
from codec.opus import Pcm16
from codec.pcm import read_wav, resample
from gateway.voice.targets import PCM_RATE

Lang = Literal["cmn", "en"]
LANGS: Final[tuple[Lang, ...]] = ("cmn", "en")
MAX_TEXT_CHARS: Final = 1000
MAX_SPEECH_S: Final = 30.0  # what one spoken message may last: the default longest burst
MAX_WAV_BYTES: Final = 16 << 20
SYNTH_TIMEOUT_S: Final = 30.0


class SpeechError(ValueError):
    """Text or audio that cannot become speech (the message says why)."""


def _pcm16k(samples: Pcm16, rate: int) -> Pcm16:
    if rate != PCM_RATE:
        samples = resample(samples, rate, PCM_RATE)
    if len(samples) > MAX_SPEECH_S * PCM_RATE:
        raise SpeechError(f"speech is longer than {MAX_SPEECH_S:g} s")
    if not len(samples):
        raise SpeechError("no audio")
    return samples


def wav_speech(data: bytes) -> Pcm16:
    """An uploaded WAV file (PCM, any rate, mono or stereo as codec.pcm reads it)."""
    if len(data) > MAX_WAV_BYTES:
        raise SpeechError(f"WAV file over {MAX_WAV_BYTES >> 20} MiB")
    try:
        pcm = read_wav(data)
    except CodecError as exc:
        raise SpeechError(f"not a usable WAV file: {exc}") from exc
    return _pcm16k(pcm.samples, pcm.rate)


async def text_speech(text: str, lang: str) -> Pcm16:
    """`text` spoken by espeak-ng in `lang` (the text goes on stdin, never on a command line)."""
    if lang not in LANGS:
        raise SpeechError(f"lang must be one of {', '.join(LANGS)}")
    text = text.strip()
    if not text or len(text) > MAX_TEXT_CHARS:
        raise SpeechError(f"text must be 1-{MAX_TEXT_CHARS} characters")
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SpeechError("espeak-ng is not installed on the gateway; upload a WAV instead")
    process = await asyncio.create_subprocess_exec(
        exe, "-v", lang, "--stdout",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        wav, err = await asyncio.wait_for(
            process.communicate(text.encode("utf-8")), SYNTH_TIMEOUT_S
        )
    except TimeoutError as exc:
        process.kill()
        await process.wait()
        raise SpeechError(f"espeak-ng took over {SYNTH_TIMEOUT_S:g} s") from exc
    if process.returncode != 0:
        raise SpeechError(f"espeak-ng failed: {err.decode(errors='replace').strip()[:200]}")
    try:
        pcm = read_wav(wav)
    except CodecError as exc:
        raise SpeechError(f"espeak-ng gave unreadable audio: {exc}") from exc
    return _pcm16k(pcm.samples, pcm.rate)
