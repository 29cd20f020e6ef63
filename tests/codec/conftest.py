"""Test speech made at test time with espeak-ng (never downloaded), at 16 kHz via codec.pcm."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from codec.opus import Pcm16
from codec.pcm import write_wav
from tests.codec.speech import SENTENCES, speak


@pytest.fixture(scope="session")
def speech() -> Callable[[str], Pcm16]:
    """speech("en") / speech("cmn"): about 4-5 s of 16 kHz speech, cached for the session."""
    cache: dict[str, Pcm16] = {}

    def make(language: str) -> Pcm16:
        if language not in cache:
            cache[language] = speak(language, SENTENCES[language])
        return cache[language]

    return make


@pytest.fixture
def speech_wav(tmp_path: Path, speech: Callable[[str], Pcm16]) -> Callable[[str], Path]:
    """speech_wav("en"): the same speech written as a 16 kHz WAV file in tmp_path."""

    def make(language: str) -> Path:
        path = tmp_path / f"speech-{language}.wav"
        path.write_bytes(write_wav(speech(language), 16000))
        return path

    return make
