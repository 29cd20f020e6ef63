"""Where the console's listening audio is decoded: on the server (what ships) or in the browser
with WebCodecs `AudioDecoder`.

    .venv/bin/python bench/console_decode.py [--seconds 20]

Measured in one run on this machine, on the same Opus packets (espeak-ng speech, 20 ms packets
at 16 kbit/s, what terminals send): the server's per-frame decode (libopus through
codec.opus at 16 kHz, what gateway/voice/listener.py does), the browser's (Chromium's
AudioDecoder at 48 kHz, headless, in a secure loopback page), and the relay's per-frame header
check (codec.frame.frame_audio) as the reference the gateway already pays per frame. Also the
bytes per second a listened talkgroup costs on the WebSocket either way. Writes
bench/results/console_decode.json.
"""

from __future__ import annotations

import argparse
import base64
import http.server
import json
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: bench/ would shadow the codec package
    sys.path.insert(0, str(ROOT))
sys.path = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import numpy as np  # noqa: E402

from codec.frame import VoiceFrame, encode_frame, frame_audio  # noqa: E402
from codec.opus import OpusDecoder  # noqa: E402
from codec.pcm import read_wav, resample  # noqa: E402
from codec.stream import VoiceSender  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "console_decode.json"
TEXT = (
    "The patrol team reached the north gate at seven thirty. Please confirm the location of "
    "the second vehicle. All units in grid seven, stand by for instructions."
)

BROWSER_DECODE = """async (packets) => {
  const bytes = packets.map((p) => Uint8Array.from(atob(p), (c) => c.charCodeAt(0)));
  let out = 0;
  const decoder = new AudioDecoder({output: (d) => { out += d.numberOfFrames; d.close(); },
                                    error: (e) => { throw e; }});
  decoder.configure({codec: "opus", sampleRate: 48000, numberOfChannels: 1});
  const start = performance.now();
  bytes.forEach((b, i) => decoder.decode(new EncodedAudioChunk(
    {type: "key", timestamp: i * 20000, duration: 20000, data: b})));
  await decoder.flush();
  const ms = performance.now() - start;
  decoder.close();
  return {ms, samples: out};
}"""


def speech_frames(seconds: float) -> list[VoiceFrame]:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SystemExit("espeak-ng is needed (scripts/bootstrap.sh installs it)")
    wav = subprocess.run([exe, "-v", "en", "--stdout", TEXT], capture_output=True, check=True)
    pcm = read_wav(wav.stdout)
    samples = resample(pcm.samples, pcm.rate, 16000)
    while len(samples) < seconds * 16000:
        samples = np.concatenate([samples, samples])
    samples = samples[: int(seconds * 16000)]
    sender = VoiceSender()
    sender.start_burst(1, 0.0)
    return [*sender.push_pcm(samples, 0.0), sender.end_burst(0.0)]


def per_frame_us(fn: Any, items: list[Any], min_s: float = 1.0) -> float:
    rounds = 0
    start = time.perf_counter()
    while True:
        for item in items:
            fn(item)
        rounds += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_s:
            return elapsed / (rounds * len(items)) * 1e6


def server_decode(frames: list[VoiceFrame]) -> float:
    decoder = OpusDecoder(16000)
    packets = [p for f in frames for p in f.packets if p]
    return per_frame_us(decoder.decode, packets)


def relay_check(frames: list[VoiceFrame]) -> float:
    payloads = [encode_frame(f) for f in frames]
    return per_frame_us(frame_audio, payloads)


def browser_decode(frames: list[VoiceFrame]) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("chromium is needed (scripts/bootstrap.sh installs it)")
    packets = [base64.b64encode(p).decode() for f in frames for p in f.packets if p]

    class Blank(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<!doctype html><title>decode</title>")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Blank)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium, headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )  # fmt: skip
            try:
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
                page.evaluate(BROWSER_DECODE, packets[:50])  # warm up
                runs = [page.evaluate(BROWSER_DECODE, packets) for _ in range(5)]
            finally:
                browser.close()
    finally:
        server.shutdown()
    best = min(run["ms"] for run in runs)
    return {
        "per_frame_us": round(best * 1000 / len(packets), 2),
        "runs_ms": [round(run["ms"], 1) for run in runs],
        "samples_48k": runs[0]["samples"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    frames = speech_frames(args.seconds)
    opus_bytes = sum(len(encode_frame(f)) for f in frames) / args.seconds
    reference = relay_check(frames)
    server = server_decode(frames)
    browser = browser_decode(frames)
    frames_per_s = len(frames) / args.seconds
    result = {
        "what": "console listening: decode on the server (shipped) vs in the browser",
        "machine": platform.machine(),
        "frames": len(frames),
        "reference_relay_frame_check_us": round(reference, 3),
        "server_decode_us_per_frame": round(server, 2),
        "server_decode_ratio_to_relay_check": round(server / reference, 1),
        "server_core_share_per_listened_talkgroup": round(server * frames_per_s / 1e6, 5),
        "browser_decode_us_per_frame": browser["per_frame_us"],
        "browser_runs_ms": browser["runs_ms"],
        "browser_to_server_decode_ratio": round(browser["per_frame_us"] / server, 2),
        "websocket_bytes_per_s_pcm16": round(frames_per_s * (2 + 320 * 2)),
        "websocket_bytes_per_s_opus_frames": round(opus_bytes + frames_per_s * 2),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
