"""Audio checks for voice tests: decoding received frames, and how well received speech
matches its source (normalised cross-correlation over all alignments; PESQ when aligned)."""

from __future__ import annotations

import numpy as np

from codec.frame import VoiceFrame
from codec.opus import OpusDecoder, Pcm16


def decode_frames(frames: list[VoiceFrame], rate: int = 16000) -> Pcm16:
    """The audio of one burst's frames in sequence order (gaps concealed)."""
    decoder = OpusDecoder(rate)
    out: list[Pcm16] = []
    frames = sorted(frames, key=lambda f: f.seq)
    expected = frames[0].seq if frames else 0
    for frame in frames:
        for _ in range(frame.seq - expected):
            out.append(decoder.conceal(rate * frame.frame_ms // 1000 * max(1, len(frame.packets))))
        out += [decoder.decode(p) for p in frame.packets]
        expected = frame.seq + 1
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int16)


def window_alignments(source: Pcm16, received: Pcm16, window: int = 16000) -> list[float]:
    """The best correlation of each speech-bearing `window` of `received` against a looped
    `source`, each aligned on its own: a gap in the path (a stalled capture or socket on a busy
    machine) shifts what follows it, which one offset for the whole recording would count as
    noise. Windows with little energy (a pause between words) are left out."""
    level = float(np.sqrt(np.mean(received.astype(np.float64) ** 2)))
    scores = []
    for start in range(0, len(received) - window + 1, window):
        part = received[start : start + window]
        if float(np.sqrt(np.mean(part.astype(np.float64) ** 2))) >= 0.3 * level:
            scores.append(best_alignment(source, part, looped=True)[0])
    return scores


def best_alignment(source: Pcm16, received: Pcm16, *, looped: bool = False) -> tuple[float, int]:
    """(peak normalised cross-correlation, offset of `received` in `source`). `looped`: the
    source played in a loop (a fake microphone), so `received` may wrap around its end."""
    ref = source.astype(np.float64)
    pad = 0
    if looped:
        ref = np.concatenate([ref, ref])
    else:  # the received audio may start earlier (codec delay) or run longer (padding)
        pad = len(received) + 8000
        ref = np.concatenate([np.zeros(pad), ref, np.zeros(pad)])
    sig = received.astype(np.float64)
    sig = sig - sig.mean()
    if len(sig) > len(ref):
        sig = sig[: len(ref)]
    n = len(ref) + len(sig)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(ref, size) * np.conj(np.fft.rfft(sig, size)), size)
    corr = corr[: len(ref) - len(sig) + 1]
    # energy of each reference window of len(sig)
    csum = np.concatenate([[0.0], np.cumsum(ref * ref)])
    windows = csum[len(sig) :] - csum[: len(ref) - len(sig) + 1]
    sums = np.concatenate([[0.0], np.cumsum(ref)])
    means = (sums[len(sig) :] - sums[: len(ref) - len(sig) + 1]) / len(sig)
    energy = windows - len(sig) * means * means
    # windows mostly of padding would score high on little energy: they must hold a fair share
    energy = np.maximum(energy, 0.5 * float(np.max(energy)))
    score = corr / np.sqrt(energy * float(np.dot(sig, sig)) + 1e-9)
    best = int(np.argmax(score))
    return float(score[best]), best - pad


def pesq_score(source: Pcm16, received: Pcm16, offset: int, rate: int = 16000) -> float | None:
    """Wide-band PESQ of `received` against `source` from `offset` (None: pesq not installed or
    the stretch is too short)."""
    try:
        from pesq import pesq
    except ImportError:
        return None
    ref = np.concatenate([source, source])[max(0, offset) : max(0, offset) + len(received)]
    if offset < 0:
        received = received[-offset:]
    length = min(len(ref), len(received))
    if length < rate // 2:
        return None
    return float(pesq(rate, ref[:length], received[:length], "wb"))
