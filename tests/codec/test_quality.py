"""Quality evaluation on a 5 s espeak clip: protection must measurably help, numbers be sane."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest
from pesq import pesq

from codec.errors import QualityError
from codec.opus import EncoderSettings, OpusDecoder, OpusEncoder, Pcm16
from codec.pcm import frames_of
from codec.playout import JitterConfig
from codec.protection import ProtectMode
from codec.quality import Channel, Impairment, QualityConfig, evaluate, phase_sweep

Speech = Callable[[str], Pcm16]


@pytest.fixture(scope="module")
def clip(speech: Speech) -> Pcm16:
    return speech("en")[: 5 * 16000]


def codec_only_pesq(clip: Pcm16) -> float:
    encoder, decoder = OpusEncoder(EncoderSettings(complexity=9)), OpusDecoder(16000)
    direct = np.concatenate([decoder.decode(encoder.encode(f)) for f in frames_of(clip, 320)])
    return float(pesq(16000, clip, direct, "wb"))


def test_clean_channel_scores_like_the_codec(clip: Pcm16) -> None:
    codec_only = codec_only_pesq(clip)
    result = evaluate(clip, QualityConfig(protect=ProtectMode.OFF))
    assert result.pesq_wb == pytest.approx(codec_only, abs=0.05)
    # The listener's first burst too: its start delay is not shed by dropping speech.
    assert result.first_burst_pesq_wb == pytest.approx(codec_only, abs=0.05)
    assert result.stoi > 0.97
    assert result.expand_rate == 0 and result.late_rate == 0 and result.concealed == 0
    assert 13 < result.kbps_on_air < 17
    assert result.added_delay_p95_ms <= 25  # only the sound card's tick phase


def test_no_phase_between_talker_and_listener_costs_quality(clip: Pcm16) -> None:
    """1 ms of jitter, no loss: at every arrival shift (0-20 ms, 2.5 ms steps) both bursts score
    like the codec alone. A playout clock locked just before the arrivals fails this."""
    codec_only = codec_only_pesq(clip)
    config = QualityConfig(protect=ProtectMode.OFF, impairment=Impairment(jitter_ms=1))
    result = phase_sweep(clip, config, step_ms=2.5)
    assert result.phase_sweep_min is not None
    assert result.phase_sweep_min == pytest.approx(codec_only, abs=0.05)
    assert result.late_rate == 0 and result.first_burst_late_rate == 0
    assert 0 < result.target_delay_ms <= 5


def test_auto_protection_beats_plain_concealment(clip: Pcm16) -> None:
    network = Impairment(loss_pct=10, jitter_ms=20)
    plain = evaluate(clip, QualityConfig(protect=ProtectMode.OFF, impairment=network))
    auto = evaluate(clip, QualityConfig(protect=ProtectMode.AUTO, impairment=network))
    assert plain.channel_loss_pct == pytest.approx(auto.channel_loss_pct, abs=0.01)  # same seed
    assert auto.final_red and auto.red_recovered > 10
    assert auto.kbps_on_air <= 32.0
    assert auto.pesq_wb > plain.pesq_wb + 0.8
    assert auto.stoi > plain.stoi
    assert auto.concealed < plain.concealed / 3
    assert auto.added_delay_p95_ms <= 80


def test_red2_copies_cover_double_losses_within_the_cap(clip: Pcm16) -> None:
    """Same channel draws with and without RED2: it only turns concealments into copies.

    A RED2 copy leaves 40 ms after its packet, so it is in time only where the jitter buffer's
    delay covers that: here a listener whose buffer covers 0.99 of the protection's arrivals."""
    network = Impairment(loss_pct=20, burst_len=2, jitter_ms=20)
    deep = JitterConfig(protected_quantile=0.99)
    depth1 = evaluate(clip, QualityConfig(impairment=network, red_depth=1, jitter=deep), seed=3)
    depth2 = evaluate(clip, QualityConfig(impairment=network, jitter=deep), seed=3)
    assert depth1.red2_recovered == 0 and depth2.red2_recovered >= 1
    assert depth2.concealed == depth1.concealed - depth2.red2_recovered
    assert depth1.kbps_on_air < depth2.kbps_on_air <= 32.0
    assert depth2.pesq_wb > depth1.pesq_wb


def test_auto_stays_off_when_jitter_is_covered_by_the_buffer(clip: Pcm16) -> None:
    result = evaluate(clip, QualityConfig(impairment=Impairment(jitter_ms=20)))
    assert not result.final_red and result.kbps_on_air < 17
    assert result.late_rate < 0.01


def test_held_back_packets_are_rarely_late_and_protection_covers_the_rest(clip: Pcm16) -> None:
    """5 % of messages are held back 20-40 ms past the jitter. The playout delay never drops
    below the target, which covers them after the first few (late, concealed); with protection
    (RED and its packet of lookahead) none is late in the warm burst."""
    network = Impairment(jitter_ms=20, reorder_pct=5)
    plain = evaluate(clip, QualityConfig(protect=ProtectMode.OFF, impairment=network))
    auto = evaluate(clip, QualityConfig(impairment=network))
    assert 0 < plain.first_burst_late_rate < 0.01
    assert plain.late_rate < 0.01
    assert auto.final_red and auto.late_rate == 0
    assert auto.pesq_wb > plain.pesq_wb + 0.3


def test_channel_models_random_and_bursty_loss() -> None:
    def runs(burst_len: float) -> tuple[float, float]:
        channel = Channel(Impairment(loss_pct=10, burst_len=burst_len), np.random.default_rng(3))
        lost = [channel.arrival(i * 0.02, 0.02) is None for i in range(20000)]
        starts = sum(1 for a, b in zip([False, *lost], lost, strict=False) if b and not a)
        return sum(lost) / len(lost), sum(lost) / starts

    random_rate, random_run = runs(1.0)
    bursty_rate, bursty_run = runs(4.0)
    assert random_rate == pytest.approx(0.10, abs=0.01)
    assert bursty_rate == pytest.approx(0.10, abs=0.015)
    assert random_run == pytest.approx(1.11, abs=0.05)  # geometric runs of independent loss
    assert bursty_run == pytest.approx(4.0, abs=0.4)


def test_jitter_is_netem_like_and_reorders() -> None:
    channel = Channel(Impairment(jitter_ms=20, base_delay_ms=50), np.random.default_rng(1))
    delays = [channel.arrival(i * 0.02, 0.02) - i * 0.02 for i in range(5000)]  # type: ignore[operator]
    assert min(delays) >= 0.030 - 1e-9 and max(delays) <= 0.070 + 1e-9
    arrivals = [i * 0.02 + d for i, d in enumerate(delays)]
    assert sum(1 for a, b in itertools.pairwise(arrivals) if b < a) > 500


def test_bad_input_rejected(clip: Pcm16) -> None:
    with pytest.raises(QualityError):
        evaluate(clip[:8000], QualityConfig())
    with pytest.raises(QualityError):
        evaluate(clip.astype(np.float32), QualityConfig())
    with pytest.raises(QualityError):
        Impairment(loss_pct=100)
    with pytest.raises(QualityError):
        Impairment(burst_len=0.5)
