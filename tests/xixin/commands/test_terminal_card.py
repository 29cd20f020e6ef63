"""`xixin terminal` on a sound card, for real, without hardware: private PulseAudio daemons'
null sinks are the cards (PyAudio -> PortAudio -> ALSA's pulse plugin -> PulseAudio).

Speech is played into the talker's `mic` sink, whose monitor is the talking terminal's microphone;
the listening terminal plays into its `spk` sink, whose monitor is recorded; the recording is
compared with the speech.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from codec.pcm import level_dbfs
from firmware_sim.voice import synthesize
from gateway.broker import ManagedBroker
from gateway.directory import build_directory
from gateway.runner import GatewayRunner, GatewaySettings
from protocol.org import default_org
from tests.gateway.harness import GatewayThread
from tests.xixin.commands.test_terminal import _lines, _until

RATE = 16000
TOOLS = ("pulseaudio", "pactl", "pacat", "parec")
pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in TOOLS), reason="PulseAudio is not installed (bootstrap.sh)"
)


@contextmanager
def _sound_server(base: Path, sinks: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """A private PulseAudio daemon with 16 kHz mono null sinks; the environment that reaches it
    (stopped by its PID at the end)."""
    for sub in ("run", "home", "state"):
        (base / sub).mkdir(parents=True, mode=0o700)
    socket = base / "run" / "native"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(base / "home"),
        "XDG_RUNTIME_DIR": str(base / "run"),
        "PULSE_RUNTIME_PATH": str(base / "run"),
        "PULSE_STATE_PATH": str(base / "state"),
        "PULSE_SERVER": f"unix:{socket}",
    }
    loads = [f"module-null-sink sink_name={name} rate={RATE} channels=1" for name in sinks]
    modules = [f"module-native-protocol-unix socket={socket} auth-anonymous=1", *loads]
    daemon = subprocess.Popen(
        ["pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "--system=false", "-n",
         "--disallow-exit", "--use-pid-file=no", "--log-target=stderr",
         *(arg for module in modules for arg in ("-L", module))],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for _ in range(300):  # readiness: the server answers
            if daemon.poll() is not None:
                pytest.fail(f"pulseaudio exited: {daemon.stderr.read() if daemon.stderr else ''}")
            info = subprocess.run(["pactl", "info"], env=env, capture_output=True, timeout=30)
            if info.returncode == 0:
                break
            time.sleep(0.1)
        else:
            pytest.fail("pulseaudio did not answer")
        yield env
    finally:
        daemon.terminate()
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


@pytest.fixture
def cards(tmp_path: Path) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """The talker's and the listener's sound cards: a sound server each, as two handhelds have.
    (On one shared server, a terminal opening its card stalled the other's playing stream for
    about 2 s.) Speech is played into the talker's `mic` and the listener's `spk` is recorded;
    the talker's speaker and the listener's microphone are `spare`."""
    with (
        _sound_server(tmp_path / "pulse-talker", ("mic", "spare")) as talker,
        _sound_server(tmp_path / "pulse-listener", ("spk", "spare")) as listener,
    ):
        yield talker, listener


def test_the_sound_card_path_carries_speech_from_one_terminal_to_another(
    mosquitto: ManagedBroker,
    cards: tuple[dict[str, str], dict[str, str]],
    tmp_path: Path,
) -> None:
    speech = synthesize("Control, unit seven. We are at the north gate of the compound.")
    raw_in, raw_out = tmp_path / "speech.raw", tmp_path / "heard.raw"
    # Half a second of silence after the speech: once pacat has played it, the speech is through
    # the talker's microphone and encoder, and the PTT can be released.
    tail = np.zeros(RATE // 2, dtype=np.int16)
    raw_in.write_bytes(np.concatenate([speech, tail]).astype("<i2").tobytes())
    devices = [("T001", "grid-01", "officer", True), ("T002", "grid-01", "guard", True)]
    settings = GatewaySettings(broker=mosquitto.address)
    gw = GatewayThread(GatewayRunner(settings, build_directory(default_org(), devices))).start()
    raw = ["--rate", str(RATE), "--channels", "1", "--format", "s16le", "--raw"]
    ahead = ["chrt", "-r", "10"] if os.geteuid() == 0 else ["nice", "-n", "-10"]

    talker_card, listener_card = cards

    def terminal(
        device: str, card: dict[str, str], source: str, sink: str
    ) -> subprocess.Popen[str]:
        errors = (tmp_path / f"{device}.stderr").open("w")  # PortAudio's probing is chatty
        env = {**card, "XIXIN_DATA_DIR": str(tmp_path), "PULSE_SOURCE": source,
               "PULSE_SINK": sink}  # fmt: skip
        # Real-time round-robin as root (as PulseAudio runs its own threads), else `nice`
        # (which warns and goes on when not allowed): a card whose callbacks come late loses
        # audio (an xrun), and the machine running the tests may be loaded.
        return subprocess.Popen(
            [*ahead, sys.executable, "-m", "xixin", "terminal", "--device", device,
             "--tg", "grid-01",
             "--broker", f"mqtt://127.0.0.1:{mosquitto.port}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True,
            env=env, cwd=os.getcwd(),
        )  # fmt: skip

    recorder = subprocess.Popen([*ahead, "parec", "--device", "spk.monitor", *raw, str(raw_out)],
                                env=listener_card)  # fmt: skip
    listener = terminal("T002", listener_card, "spare.monitor", "spk")
    talker = None
    try:
        heard_lines = _lines(listener.stdout)  # type: ignore[arg-type]
        assert "sound card open" in _until(heard_lines, "xixin terminal:"), _stderr(tmp_path)
        talker = terminal("T001", talker_card, "mic.monitor", "spare")
        said_lines = _lines(talker.stdout)  # type: ignore[arg-type]
        assert "sound card open" in _until(said_lines, "xixin terminal:"), _stderr(tmp_path)
        _until(heard_lines, "listening on grid-01")
        _until(said_lines, "listening on grid-01")
        assert talker.stdin is not None
        talker.stdin.write("p\n")
        talker.stdin.flush()
        _until(said_lines, "access time")
        # Into the talker's microphone, at real-time pace (pacat returns once it is played).
        subprocess.run([*ahead, "pacat", "--playback", "--device", "mic", *raw, str(raw_in)],
                       env=talker_card, check=True, timeout=120)  # fmt: skip
        talker.stdin.write("r\n")
        talker.stdin.flush()
        heard = _until(heard_lines, "heard burst")
        assert "mouth-to-ear p50" in heard
        for process in (talker, listener):
            assert process.stdin is not None
            process.stdin.write("q\n")
            process.stdin.flush()
        assert talker.wait(60) == 0 and listener.wait(60) == 0
        card = (_until(said_lines, "sound card:"), _until(heard_lines, "sound card:"))
    finally:
        recorder.terminate()
        recorder.wait(30)
        gw.stop()
        for process in (talker, listener):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    recorded = np.frombuffer(raw_out.read_bytes(), dtype="<i2").astype(np.int16)
    loud_in, loud_out = _loud_seconds(speech), _loud_seconds(recorded)
    assert loud_in >= 1.5
    # The speech came out, and nothing else. On a loaded machine a card may drop a little
    # (callbacks too late: an xrun, counted in the terminals' last line), hence the margins.
    assert 0.8 * loud_in <= loud_out <= loud_in + 0.3, (loud_in, loud_out, card)
    # And it is that speech: the 20 ms envelopes of its first second correlate at some lag
    # (other speech, or noise, stays far below; an xrun's gap costs a little).
    env_in, env_out = _envelope(speech), _envelope(recorded)
    first = np.flatnonzero(env_in > env_in.max() / 10)[0]
    part = env_in[first : first + 50]
    windows = (env_out[lag : lag + len(part)] for lag in range(len(env_out) - len(part) + 1))
    best = max(float(np.corrcoef(part, w)[0, 1]) for w in windows if w.std() > 0)
    assert best > 0.6, (best, card)


def _stderr(tmp_path: Path) -> str:
    return "".join(p.read_text()[-2000:] for p in sorted(tmp_path.glob("*.stderr")))


def _loud_seconds(pcm: np.ndarray) -> float:
    frames = range(0, len(pcm) - 320 + 1, 320)
    return sum(level_dbfs(pcm[i : i + 320]) > -40 for i in frames) * 0.02


def _envelope(pcm: np.ndarray) -> np.ndarray:
    chunks = pcm[: len(pcm) // 320 * 320].astype(float).reshape(-1, 320)
    return np.sqrt((chunks**2).mean(axis=1))
