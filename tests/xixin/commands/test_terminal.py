"""`xixin terminal`: which talkgroups a device gets, running without a keyboard, talking a
file once."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import pytest

from codec.pcm import write_wav
from firmware_sim.errors import SimError
from firmware_sim.voice import synthesize
from gateway.broker import ManagedBroker
from gateway.directory import build_directory
from gateway.runner import GatewayRunner, GatewaySettings
from protocol.org import default_org
from tests.gateway.harness import GatewayThread
from xixin.cli import build_parser
from xixin.commands.terminal import _identity, _talkgroups


def _args(*argv: str):  # type: ignore[no-untyped-def]
    return build_parser().parse_args(["terminal", *argv])


def test_the_demo_file_knows_the_demo_devices(tmp_path: Path) -> None:
    secrets = tmp_path / "demo-secrets.json"
    secrets.write_text(json.dumps({"T101": "s3"}))
    args = _args("--device", "T101", "--secrets", str(secrets))
    identity = _identity(args)
    assert (identity.secret, identity.unit, identity.role) == ("s3", "grid-07", "officer")
    assert _talkgroups(args, identity)[0] == "grid-07"


def test_a_sim_file_gives_the_unit_it_was_provisioned_with(tmp_path: Path) -> None:
    secrets = tmp_path / "sim-secrets.json"
    body = {"broker": "mqtt://h:1", "devices": [{"id": "T001", "unit": "grid-07",
                                                  "role": "guard", "secret": "s1"}]}  # fmt: skip
    secrets.write_text(json.dumps(body))
    args = _args("--device", "T001", "--secrets", str(secrets))
    identity = _identity(args)
    assert (identity.unit, identity.role) == ("grid-07", "guard")
    assert _talkgroups(args, identity) == ["grid-07", "all"]


def test_an_unknown_unit_is_asked_for_not_guessed_from_the_demo(tmp_path: Path) -> None:
    secrets = tmp_path / "site-secrets.json"  # a plain {id: secret} file of another site
    secrets.write_text(json.dumps({"T001": "s1"}))  # T001 is also a demo id (grid-01)
    args = _args("--device", "T001", "--secrets", str(secrets))
    with pytest.raises(SimError, match="give --unit"):
        _talkgroups(args, _identity(args))
    args = _args("--device", "T001", "--secrets", str(secrets), "--unit", "grid-07")
    assert _talkgroups(args, _identity(args))[0] == "grid-07"


def test_without_a_keyboard_it_runs_until_ctrl_c(mosquitto: ManagedBroker, tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "xixin", "terminal", "--device", "T001", "--tg", "grid-01",
         "--broker", f"mqtt://127.0.0.1:{mosquitto.port}", "--no-card",
         "--wav-out", str(tmp_path / "out.wav")],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"XIXIN_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        for line in process.stdout:  # the readiness signal
            if "no keyboard" in line:
                break
        else:
            errors = process.stderr.read() if process.stderr else ""
            pytest.fail(f"no 'no keyboard' line; stderr: {errors}")
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_position_option_is_lat_lon_within_range() -> None:
    import argparse

    from xixin.commands.terminal import _position

    assert _position("30.66,104.06") == (30.66, 104.06)
    for bad in ("30.66", "x,y", "91,0", "0,181", "1,2,3"):
        with pytest.raises(argparse.ArgumentTypeError):
            _position(bad)


def test_talk_file_once_prints_access_time_and_the_listener_mouth_to_ear(
    mosquitto: ManagedBroker, tmp_path: Path
) -> None:
    """Two `xixin terminal` processes: one talks a WAV once (--talk-file --exit-after-talk) and
    prints its access time; the other prints the burst it heard with its mouth-to-ear delay."""
    wav = tmp_path / "in.wav"
    wav.write_bytes(write_wav(synthesize("Unit seven, north gate."), 16000))
    devices = [("T001", "grid-01", "officer", True), ("T002", "grid-01", "guard", True)]
    settings = GatewaySettings(broker=mosquitto.address)
    gw = GatewayThread(GatewayRunner(settings, build_directory(default_org(), devices))).start()
    broker = f"mqtt://127.0.0.1:{mosquitto.port}"
    env = {"XIXIN_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}

    def terminal(device: str, *extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "xixin", "terminal", "--device", device, "--tg", "grid-01",
             "--broker", broker, "--no-card", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env,
        )  # fmt: skip

    listener = terminal("T002", "--wav-out", str(tmp_path / "out.wav"))
    talker = None
    try:
        assert listener.stdout is not None
        lines = _lines(listener.stdout)
        _until(lines, "listening on grid-01")  # affiliated: it hears from the start
        talker = terminal("T001", "--talk-file", str(wav), "--exit-after-talk")
        out, err = talker.communicate(timeout=120)
        assert talker.returncode == 0, (out, err)
        assert re.search(r"floor granted on grid-01: access time \d+ ms", out), out
        assert "talked the file" in out
        heard = _until(lines, "heard burst")
        assert re.search(r"heard burst \d+ on grid-01: \d+\.\d s, mouth-to-ear p50 \d+ ms", heard)
        listener.send_signal(signal.SIGINT)
        assert listener.wait(60) == 0
    finally:
        gw.stop()
        for process in (listener, talker):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def _lines(stream: IO[str]) -> queue.Queue[str | None]:
    """The lines of a child's output, read on a thread (None at its end)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _until(lines: queue.Queue[str | None], text: str) -> str:
    seen = []
    while True:
        line = lines.get(timeout=120)  # a readiness signal, not a latency bound
        if line is None:
            pytest.fail(f"no line with {text!r} in {seen}")
        seen.append(line)
        if text in line:
            return line
