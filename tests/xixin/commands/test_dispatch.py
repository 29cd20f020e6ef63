"""`xixin dispatch say` against a running gateway: a WAV and a text reach a terminal of the
grid; the password comes from the environment or a file, never the command line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from codec.pcm import write_wav
from devices.client import TerminalClient
from gateway.service import GatewayService
from tests.codec.speech import speak
from tests.gateway.console.conftest import served, wait_for_device
from tests.gateway.voice.audio import best_alignment, decode_frames

__all__ = ["served"]  # the fixture


def _burst(terminal: TerminalClient, timeout: float = 30.0) -> list:  # type: ignore[type-arg]
    frames = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = terminal.frames.get(timeout=deadline - time.monotonic()).frame
        frames.append(frame)
        if frame.end:
            return frames
    raise AssertionError("no end of burst")


def _xixin(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xixin", "dispatch", "say", *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_dispatch_say_wav_and_text(served: tuple[str, GatewayService], tmp_path: Path) -> None:
    url, service = served
    _, password = service.accounts.add("g07", "grid:grid-07")
    _, secret = service.registry.add("T0702", "grid-07", "officer", "Officer Li")
    wait_for_device(service, "T0702")
    wait_for_device(service, "xixin-u-g07")
    assert service.broker is not None
    officer = TerminalClient("T0702", secret, service.broker.host, service.broker.port)
    officer.connect()
    try:
        officer.affiliate(["grid-07"])
        speech = speak("en", "Unit seven, report to the north gate.")
        wav = tmp_path / "msg.wav"
        wav.write_bytes(write_wav(speech, 16000))
        env = {"XIXIN_PASSWORD": password, "XIXIN_URL": url}
        done = _xixin("--tg", "grid-07", "--wav", str(wav), "--user", "g07", env=env)
        assert done.returncode == 0, done.stderr
        assert ": done to tg:grid-07" in done.stdout and password not in done.stdout
        heard = decode_frames(_burst(officer))
        score, _ = best_alignment(speech, heard)
        assert score > 0.7, score
        secret_file = tmp_path / "pw"
        secret_file.write_text(password + "\n")
        spoken = _xixin(
            "--tg", "grid-07", "--text", "请到北门", "--password-file", str(secret_file),
            env={"XIXIN_URL": url, "XIXIN_USER": "g07"},
        )  # fmt: skip
        assert spoken.returncode == 0, spoken.stderr
        assert len(_burst(officer)) > 20
        refused = _xixin("--tg", "grid-02", "--text", "hello", "--user", "g07", env=env)
        assert refused.returncode == 1 and "403" in refused.stderr
        wrong = _xixin("--all", "--text", "hi", "--user", "g07",
                       env={**env, "XIXIN_PASSWORD": "wrong"})  # fmt: skip
        assert wrong.returncode == 1 and "401" in wrong.stderr
    finally:
        officer.disconnect()
