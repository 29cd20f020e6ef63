"""Speech synthesis for tests: espeak-ng at test time (never downloaded), resampled by codec.pcm."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from codec.opus import Pcm16
from codec.pcm import read_wav, resample

SENTENCES = {
    "en": "The patrol team reached the north gate at seven thirty. "
    "Please confirm the location of the second vehicle.",
    "cmn": "巡逻队已经到达北门，请确认第二辆车的位置。",
}


def speak(voice: str, text: str, rate: int = 16000) -> Pcm16:
    """Synthesise `text` with espeak-ng voice `voice` (e.g. "en", "cmn+f3") at `rate`."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (scripts/bootstrap.sh installs it)")
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "--stdout", text], capture_output=True, check=True, timeout=60
    ).stdout
    pcm = read_wav(wav)
    return resample(pcm.samples, pcm.rate, rate)
