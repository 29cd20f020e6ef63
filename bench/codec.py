"""Voice pipeline benchmark: codec speed against bare libopus, and quality under loss/jitter.

    python bench/codec.py [--quick]

Speed: frames per second per core (CPU time of this single-threaded process) through
codec.opus (OpusEncoder.encode / OpusDecoder.decode) and through bare ctypes calls on libopus
with preallocated buffers, in the same run and interleaved, so a busy shared machine slows both
alike. Ratios are package / bare (1.0 = no overhead).

Quality: PESQ-WB and STOI through codec.quality (encode -> network model -> jitter buffer ->
decode) at 0/5/10/20 % random loss with 20 ms jitter, for protect = off, fec, red, auto (and auto
without RED2, red_depth 1), averaged over espeak-ng clips made at run time (Mandarin and English,
a default and a female voice) and network seeds (1, 2). The 10 % auto target is also estimated
over ten seeds with a standard error, since an 8-run mean moves by about 0.15 PESQ-WB with the
seeds. Writes bench/results/codec.json.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from pesq import pesq  # noqa: E402

from codec.opus import EncoderSettings, OpusDecoder, OpusEncoder, Pcm16  # noqa: E402
from codec.pcm import frames_of, read_wav, resample  # noqa: E402
from codec.protection import ProtectMode  # noqa: E402
from codec.quality import Impairment, QualityConfig, QualityResult, evaluate  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "codec.json"
RATE = 16000
FRAME = 320
TEXT = {
    "en": "The patrol team reached the north gate at seven thirty. Please confirm the location "
    "of the second vehicle and report any damage to the fence.",
    "cmn": "巡逻队已经到达北门，请确认第二辆车的位置，并报告围栏的损坏情况。",
}
VOICES_FULL = ("en", "cmn", "en+f3", "cmn+f3")
VOICES_QUICK = ("en", "cmn")
LOSSES = (0.0, 5.0, 10.0, 20.0)
ESTIMATE_SEEDS = tuple(range(1, 11))
ESTIMATE_SEEDS_QUICK = (1, 2, 3)
JITTER_MS = 20.0
QUALITY_NOTE = (
    "quality rows are deterministic for seeds (1, 2), but under loss an 8-run mean moves by about "
    "0.15 PESQ-WB with the network seeds (which packets are lost twice decides it): judge the "
    "10 % target by auto_10pct_over_seeds; red_depth 1 rows are auto without RED2"
)
MACHINE_NOTE = (
    "2 shared cores, other engineers' jobs running: speeds are CPU time per core and the "
    "package/bare ratios come from interleaved runs; quality figures are deterministic"
)


def speech(voice: str, seconds: float | None) -> Pcm16:
    language = voice.split("+")[0]
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "--stdout", TEXT[language]],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    pcm = read_wav(wav)
    samples = resample(pcm.samples, pcm.rate, RATE)
    return samples[: int(seconds * RATE)] if seconds else samples


# ---- speed -------------------------------------------------------------------------------------


class BareOpus:
    """libopus through plain ctypes: its own library handle and prototypes, nothing else."""

    def __init__(self, complexity: int, bitrate: int) -> None:
        path = ctypes.util.find_library("opus")
        if path is None:
            raise SystemExit("libopus not found")
        lib = ctypes.CDLL(path)
        error = ctypes.c_int()
        lib.opus_encoder_create.restype = ctypes.c_void_p
        lib.opus_decoder_create.restype = ctypes.c_void_p
        self.enc = ctypes.c_void_p(lib.opus_encoder_create(RATE, 1, 2048, ctypes.byref(error)))
        self.dec = ctypes.c_void_p(lib.opus_decoder_create(RATE, 1, ctypes.byref(error)))
        lib.opus_encoder_ctl(self.enc, 4002, ctypes.c_int(bitrate))  # OPUS_SET_BITRATE
        lib.opus_encoder_ctl(self.enc, 4010, ctypes.c_int(complexity))  # OPUS_SET_COMPLEXITY
        lib.opus_encoder_ctl(self.enc, 4024, ctypes.c_int(3001))  # OPUS_SET_SIGNAL voice
        self.encode_fn = lib.opus_encode
        self.encode_fn.argtypes = (
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int32,
        )
        self.decode_fn = lib.opus_decode
        self.decode_fn.argtypes = (
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_int32,
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_int,
        )
        self.out = ctypes.create_string_buffer(1275)
        self.pcm = (ctypes.c_int16 * 1920)()

    def encode_all(self, frames: list[Pcm16]) -> list[bytes]:
        encode, enc, out = self.encode_fn, self.enc, self.out
        pointers = [frame.ctypes.data for frame in frames]  # the cheapest possible input path
        packets = []
        for pointer in pointers:
            length = encode(enc, pointer, FRAME, out, 1275)
            packets.append(ctypes.string_at(out, length))
        return packets

    def decode_all(self, packets: list[bytes]) -> list[bytes]:
        decode, dec, pcm = self.decode_fn, self.dec, self.pcm
        return [ctypes.string_at(pcm, 2 * decode(dec, p, len(p), pcm, 1920, 0)) for p in packets]


def _min_times(jobs: dict[str, Any], chunks: int, rounds: int) -> dict[str, float]:
    """Sum over chunks of each job's fastest run: short interleaved trials, min filters noise."""
    best = {name: [float("inf")] * chunks for name in jobs}
    for round_index in range(rounds):
        for chunk in range(chunks):
            order = list(jobs.items())
            if (round_index + chunk) % 2:
                order.reverse()  # neither side always runs first
            for name, job in order:
                start = time.process_time()
                job(chunk)
                best[name][chunk] = min(best[name][chunk], time.process_time() - start)
    return {name: sum(times) for name, times in best.items()}


def measure_speed(clip: Pcm16, rounds: int, complexity: int = 10) -> dict[str, Any]:
    frames = [np.ascontiguousarray(f) for f in frames_of(clip, FRAME)]
    bare = BareOpus(complexity, 16000)
    encoder = OpusEncoder(EncoderSettings(complexity=complexity, bitrate=16000))
    decoder = OpusDecoder(RATE)
    packets = bare.encode_all(frames)
    identical = packets == [encoder.encode(f) for f in frames]  # same library, same settings
    size = 25
    frame_chunks = [frames[i : i + size] for i in range(0, len(frames) - size + 1, size)]
    packet_chunks = [packets[i : i + size] * 8 for i in range(0, len(packets) - size + 1, size)]
    enc = _min_times(
        {
            "bare": lambda c: bare.encode_all(frame_chunks[c]),
            "package": lambda c: [encoder.encode(f) for f in frame_chunks[c]],
        },
        len(frame_chunks),
        rounds,
    )
    dec = _min_times(
        {
            "bare": lambda c: bare.decode_all(packet_chunks[c]),
            "package": lambda c: [decoder.decode(p) for p in packet_chunks[c]],
        },
        len(packet_chunks),
        rounds,
    )
    encoded = size * len(frame_chunks)
    decoded = 8 * size * len(packet_chunks)
    return {
        "encode_fps": round(encoded / enc["package"]),
        "encode_fps_bare": round(encoded / enc["bare"]),
        "encode_ratio": round(enc["bare"] / enc["package"], 3),
        "decode_fps": round(decoded / dec["package"]),
        "decode_fps_bare": round(decoded / dec["bare"]),
        "decode_ratio": round(dec["bare"] / dec["package"], 3),
        "packets_identical_to_bare": identical,
        "complexity": complexity,
        "speed_rounds": rounds,
    }


# ---- quality -----------------------------------------------------------------------------------


def clean_codec_pesq(clip: Pcm16) -> float:
    encoder, decoder = OpusEncoder(EncoderSettings(bitrate=16000)), OpusDecoder(RATE)
    out = np.concatenate([decoder.decode(encoder.encode(f)) for f in frames_of(clip, FRAME)])
    return float(pesq(RATE, clip, out[: len(clip)], "wb"))


def quality_row(
    clips: dict[str, Pcm16],
    seeds: tuple[int, ...],
    loss: float,
    mode: ProtectMode,
    red_depth: int = 2,
) -> tuple[dict[str, Any], list[QualityResult]]:
    config = QualityConfig(
        protect=mode,
        red_depth=red_depth,
        impairment=Impairment(loss_pct=loss, jitter_ms=JITTER_MS),
    )
    results = [evaluate(clip, config, seed=seed) for clip in clips.values() for seed in seeds]

    def mean(field: str) -> float:
        return statistics.fmean(float(getattr(r, field)) for r in results)

    row = {
        "loss": loss,
        "jitter_ms": JITTER_MS,
        "protect": mode.value,
        "red_depth": red_depth,
        "kbps_on_air": round(mean("kbps_on_air"), 1),
        "pesq_wb": round(mean("pesq_wb"), 3),
        "stoi": round(mean("stoi"), 3),
        "pesq_wb_min": round(min(r.pesq_wb for r in results), 3),
        "expand_rate": round(mean("expand_rate"), 4),
        "late_rate": round(mean("late_rate"), 4),
        "added_delay_mean_ms": round(mean("added_delay_mean_ms"), 1),
        "added_delay_p95_ms": round(mean("added_delay_p95_ms"), 1),
        "added_delay_p95_ms_max": round(max(r.added_delay_p95_ms for r in results), 1),
        "fec_recovered": round(mean("fec_recovered"), 1),
        "red_recovered": round(mean("red_recovered"), 1),
        "red2_recovered": round(mean("red2_recovered"), 1),
        "concealed": round(mean("concealed"), 1),
        "runs": len(results),
    }
    label = mode.value if red_depth == 2 or mode is not ProtectMode.AUTO else "auto, RED only"
    print(
        f"  loss {loss:4.0f}%  {label:14}  {row['kbps_on_air']:5.1f} kbit/s  "
        f"PESQ-WB {row['pesq_wb']:.2f}  STOI {row['stoi']:.3f}  "
        f"delay p95 {row['added_delay_p95_ms']:.0f} ms",
        flush=True,
    )
    return row, results


def quality_rows(clips: dict[str, Pcm16], seeds: tuple[int, ...]) -> list[dict[str, Any]]:
    """Every mode at every loss, plus `auto` without RED2 (red_depth 1) on lossy channels."""
    rows = []
    for loss in LOSSES:
        for mode in ProtectMode:
            rows.append(quality_row(clips, seeds, loss, mode)[0])
        if loss:
            rows.append(quality_row(clips, seeds, loss, ProtectMode.AUTO, red_depth=1)[0])
    return rows


def seed_estimate(clips: dict[str, Pcm16], seeds: tuple[int, ...]) -> dict[str, Any]:
    """The 10 % target row over many network seeds, with RED2 and without (paired runs).

    Which frames happen to be lost twice in a row decides most of an 8-run mean, so the rows
    above move by about 0.15 PESQ-WB with the seeds; this is the figure to judge designs by.
    Runs with the same clip and seed see the same losses and delays: the gain is paired.
    """
    scores = {
        depth: [r.pesq_wb for r in quality_row(clips, seeds, 10.0, ProtectMode.AUTO, depth)[1]]
        for depth in (2, 1)
    }
    gains = [a - b for a, b in zip(scores[2], scores[1], strict=True)]
    runs = len(gains)
    return {
        "loss": 10.0,
        "jitter_ms": JITTER_MS,
        "seeds": list(seeds),
        "runs": runs,
        "pesq_wb": round(statistics.fmean(scores[2]), 3),
        "pesq_wb_stderr": round(statistics.stdev(scores[2]) / runs**0.5, 3),
        "pesq_wb_red_only": round(statistics.fmean(scores[1]), 3),
        "red2_gain": round(statistics.fmean(gains), 3),
        "red2_gain_stderr": round(statistics.stdev(gains) / runs**0.5, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer clips and rounds (about a minute)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args()
    started = time.perf_counter()
    voices = VOICES_QUICK if args.quick else VOICES_FULL
    seeds = (1,) if args.quick else (1, 2)
    clips = {voice: speech(voice, 5.0 if args.quick else None) for voice in voices}

    speed = measure_speed(clips[voices[0]], rounds=3 if args.quick else 9)
    print(
        f"encode {speed['encode_fps']} fps (bare {speed['encode_fps_bare']}, ratio "
        f"{speed['encode_ratio']}), decode {speed['decode_fps']} fps (bare "
        f"{speed['decode_fps_bare']}, ratio {speed['decode_ratio']})",
        flush=True,
    )
    clean = {voice: round(clean_codec_pesq(clip), 3) for voice, clip in clips.items()}
    clean_mean = round(statistics.fmean(clean.values()), 3)
    print(f"clean 16 kbit/s PESQ-WB {clean_mean} {clean}", flush=True)
    rows = quality_rows(clips, seeds)
    estimate = seed_estimate(clips, ESTIMATE_SEEDS_QUICK if args.quick else ESTIMATE_SEEDS)
    print(f"10 % loss over {estimate['runs']} runs: {estimate}", flush=True)

    def row(loss: float, protect: str) -> dict[str, Any]:
        return next(
            r for r in rows if r["loss"] == loss and r["protect"] == protect and r["red_depth"] == 2
        )

    auto10 = row(10.0, "auto")
    delays = [r["added_delay_p95_ms"] for r in rows]
    targets = {
        "encode_ratio_ge_0_9": speed["encode_ratio"] >= 0.9,
        "decode_ratio_ge_0_9": speed["decode_ratio"] >= 0.9,
        "clean_16k_pesq_ge_3_7": clean_mean >= 3.7,
        "auto_10pct_pesq_ge_3_3": auto10["pesq_wb"] >= 3.3,
        "auto_10pct_pesq_ge_3_3_over_seeds": estimate["pesq_wb"] >= 3.3,
        "auto_10pct_kbps_le_32": auto10["kbps_on_air"] <= 32.0,
        "delay_p95_le_60ms_clean_channel": row(0.0, "auto")["added_delay_p95_ms"] <= 60.0,
        "delay_p95_le_60ms_all_rows": max(delays) <= 60.0,
    }
    result = {
        "benchmark": "codec",
        "quick": args.quick,
        "machine_note": MACHINE_NOTE,
        "machine": {"python": platform.python_version(), "cpu": platform.processor()},
        "anchors": {
            "encode_fps_complexity_10": 3100,
            "decode_fps": 29000,
            "plain_concealment_10pct": 1.9,
            "fec_24k_10pct": 2.76,
        },
        **speed,
        "clean_16k_pesq_wb": clean_mean,
        "clean_16k_pesq_wb_per_voice": clean,
        "voices": list(voices),
        "seeds": list(seeds),
        "jitter_model": "netem-like: per-message delay uniform in base +/- jitter",
        "added_delay_definition": "waiting time in the jitter buffer (WebRTC jitterBufferDelay)",
        "kbps_on_air_definition": "Opus payload incl. RED copies, without frame/MQTT headers",
        "quality_note": QUALITY_NOTE,
        "quality": rows,
        "auto_10pct_over_seeds": estimate,
        "targets_met": targets,
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"targets: {targets}")
    print(f"wrote {args.out} in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
