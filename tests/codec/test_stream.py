"""VoiceSender and VoicePlayer with real libopus: framing, protection applied, decoding."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest
from pesq import pesq

from codec.errors import CodecConfigError
from codec.frame import encode_frame, parse_frame
from codec.jitter import JitterConfig, PlayoutKind
from codec.opus import EncoderSettings, Pcm16, packet_duration
from codec.protection import ProtectionController, ProtectionPolicy, ReceiverReport
from codec.stream import VoicePlayer, VoiceSender

Speech = Callable[[str], Pcm16]


def lossy_report(loss: float) -> ReceiverReport:
    return ReceiverReport(burst=5, loss_pct=loss, jitter_ms=3.0, tg="grid-07", expected=50)


def test_sender_frames_follow_the_protocol(speech: Speech) -> None:
    sender = VoiceSender(EncoderSettings(frame_ms=20), packets_per_message=2)
    sender.start_burst(5, now=0.0, timestamp=0xFFFFFF00)
    frames = sender.push_pcm(speech("en")[:16000], now=0.0)
    frames.append(sender.end_burst(now=1.0))
    assert len(frames) == 26  # 50 frames of 20 ms in pairs, then the padded END message
    for index, frame in enumerate(frames):
        assert parse_frame(encode_frame(frame)) == frame  # valid on the wire
        assert frame.seq == index and frame.burst == 5
        assert frame.timestamp == (0xFFFFFF00 + index * 1920) % (1 << 32)
    assert frames[0].start and not frames[1].start
    assert frames[-1].end and not any(f.end for f in frames[:-1])
    assert sender.counters().messages == 26


def test_sender_applies_reports_to_the_encoder(speech: Speech) -> None:
    controller = ProtectionController(ProtectionPolicy(bitrate=24000, max_bitrate_on_air=48000))
    sender = VoiceSender(EncoderSettings(bitrate=24000), controller=controller)
    sender.start_burst(5, now=0.0)
    pcm = speech("en")
    clean = sender.push_pcm(pcm[:8000], now=0.0)
    assert all(f.redundant is None and not f.fec for f in clean)
    sender.on_report(lossy_report(10.0), now=0.5)
    readback = sender.encoder.readback()
    assert readback.inband_fec and readback.expected_loss_pct == 10
    protected = sender.push_pcm(pcm[8000:16000], now=0.6)
    assert all(f.fec for f in protected)
    for previous, current in itertools.pairwise(protected):
        assert current.redundant == previous.packets[-1]  # RFC 2198 in spirit
    on_air = sender.counters().kbps_on_air
    assert 24 < on_air <= 48


def test_dtx_silence_is_not_sent_and_red_not_attached_across_the_gap(speech: Speech) -> None:
    policy = ProtectionPolicy(mode="red")  # type: ignore[arg-type]
    sender = VoiceSender(EncoderSettings(dtx=True), controller=ProtectionController(policy))
    sender.start_burst(5, now=0.0)
    talk = speech("en")[:16000]
    pcm = np.concatenate([talk, np.zeros(32000, dtype=np.int16), talk])
    frames = sender.push_pcm(pcm, now=0.0)
    assert sender.counters().dtx_skipped > 50
    assert len(frames) < 150
    gaps = 0
    for previous, current in itertools.pairwise(frames):
        if current.timestamp - previous.timestamp == 960:
            assert current.redundant == previous.packets[-1]
        else:  # DTX frames were skipped between them: no RED copy, it would be misplaced
            assert current.redundant is None
            gaps += 1
    assert gaps >= 1
    for first, third in zip(frames, frames[2:], strict=False):
        if third.redundant2 is not None:  # RED2 only over two adjacent steps
            assert third.timestamp - first.timestamp == 2 * 960
    assert any(f.redundant2 is not None for f in frames)
    assert [f.seq for f in frames] == list(range(len(frames)))  # no sequence gap for DTX


def test_sender_rejects_misuse() -> None:
    with pytest.raises(CodecConfigError):
        VoiceSender(EncoderSettings(frame_ms=60), packets_per_message=2)  # 120 ms
    sender = VoiceSender()
    with pytest.raises(CodecConfigError):
        sender.push_pcm(np.zeros(320, dtype=np.int16), now=0.0)
    with pytest.raises(CodecConfigError):
        sender.start_burst(0, now=0.0)


def test_red2_copies_fit_under_the_cap_and_go_to_the_large_packets(speech: Speech) -> None:
    policy = ProtectionPolicy(mode="red", bitrate=16000, max_bitrate_on_air=32000)  # type: ignore[arg-type]
    sender = VoiceSender(EncoderSettings(), controller=ProtectionController(policy))
    sender.start_burst(5, now=0.0)
    pcm = speech("en")
    frames = sender.push_pcm(np.concatenate([pcm, pcm]), now=0.0)
    counters = sender.counters()
    assert 30.0 < counters.kbps_on_air <= 32.0
    assert counters.redundant2_copies >= 0.05 * counters.messages
    sizes = sorted(len(f.packets[-1]) for f in frames)
    median = sizes[len(sizes) // 2]
    covered = [(f, frames[i]) for i, f in enumerate(frames[2:]) if f.redundant2 is not None]
    assert len(covered) == counters.redundant2_copies
    large = 0
    for carrier, original in covered:
        assert carrier.redundant is not None and carrier.redundant2 is not None
        assert packet_duration(carrier.redundant2) == packet_duration(original.packets[-1])
        assert len(carrier.redundant2) <= len(original.packets[-1])
        assert parse_frame(encode_frame(carrier)) == carrier
        large += len(original.packets[-1]) > median
    # Spent on the large (important) packets: the share that fits, of the last two seconds.
    assert large >= 0.7 * len(covered)
    depth1 = ProtectionPolicy(mode="red", red_depth=1)  # type: ignore[arg-type]
    plain_red = VoiceSender(EncoderSettings(), controller=ProtectionController(depth1))
    plain_red.start_burst(5, now=0.0)
    assert all(f.redundant2 is None for f in plain_red.push_pcm(pcm, now=0.0))


def run_link(
    speech: Speech,
    lose: set[int],
    red: bool,
    jitter: Callable[[int], float] | None = None,
    red_depth: int = 2,
    config: JitterConfig | None = None,
) -> tuple[Pcm16, VoicePlayer]:
    policy = ProtectionPolicy(mode="red" if red else "off", red_depth=red_depth)  # type: ignore[arg-type]
    sender = VoiceSender(controller=ProtectionController(policy))
    player = VoicePlayer(16000, config)
    pcm = speech("cmn")
    sender.start_burst(9, now=0.0)
    frames = sender.push_pcm(pcm, now=0.0)
    frames.append(sender.end_burst(now=0.0))
    arrivals = sorted(
        (i * 0.02 + 0.03 + (jitter(i) if jitter else 0.0), i) for i in range(len(frames))
    )
    out = []
    now, index = 0.0, 0
    while now < len(frames) * 0.02 + 2.0:
        while index < len(arrivals) and arrivals[index][0] <= now:
            seq = arrivals[index][1]
            if seq not in lose:
                player.receive(frames[seq], arrivals[index][0])
            index += 1
        chunk = player.pull(now)
        if chunk.item.burst == 9:
            out.append(chunk.pcm)
        now += chunk.item.duration / 48000
    return np.concatenate(out), player


def test_player_decodes_a_clean_burst(speech: Speech) -> None:
    heard, player = run_link(speech, lose=set(), red=False)
    reference = speech("cmn")
    assert pesq(16000, reference, heard[: len(reference) + 1600], "wb") > 3.4
    stats = player.jitter.stats()
    assert stats.bursts_ended == 1 and stats.concealed == 0 and player.decode_errors == 0


def test_red_recovers_losses_end_to_end(speech: Speech) -> None:
    lose = set(range(10, 200, 9))
    plain, _ = run_link(speech, lose, red=False)
    protected, player = run_link(speech, lose, red=True)
    reference = speech("cmn")
    plain_score = pesq(16000, reference, plain[: len(reference) + 1600], "wb")
    red_score = pesq(16000, reference, protected[: len(reference) + 1600], "wb")
    # The buffer adds a packet of lookahead once it has seen loss on a protected stream, so all
    # but the first few losses come back bit-exact.
    assert player.jitter.stats().red_recovered >= len(lose) - 3
    assert red_score > plain_score + 0.5


def test_red2_recovers_double_losses_end_to_end(speech: Speech) -> None:
    lose = {n + k for n in range(20, 500, 12) for k in (0, 1)}  # pairs of messages
    # Without network jitter a RED2 copy, two messages late, needs that much buffer delay.
    config = JitterConfig(min_delay_ms=60)
    depth1, player1 = run_link(speech, lose, red=True, red_depth=1, config=config)
    depth2, player2 = run_link(speech, lose, red=True, config=config)
    reference = speech("cmn")
    stats1, stats2 = player1.jitter.stats(), player2.jitter.stats()
    assert stats1.red2_recovered == 0 and stats2.red2_recovered >= 3
    assert stats2.concealed == stats1.concealed - stats2.red2_recovered
    score1 = pesq(16000, reference, depth1[: len(reference) + 1600], "wb")
    score2 = pesq(16000, reference, depth2[: len(reference) + 1600], "wb")
    assert score2 > score1 + 0.05


def test_player_reports_reception(speech: Speech) -> None:
    _, player = run_link(speech, lose={20, 21, 50}, red=False, jitter=lambda i: 0.01 * (i % 3))
    report = player.receiver_report(100.0, tg="grid-07")
    assert report is not None  # the burst ended: its last report is due
    assert report.burst == 9 and report.received is not None


def test_silence_between_bursts_and_quiet_detection() -> None:
    player = VoicePlayer(8000)
    chunk = player.pull(0.0)
    assert chunk.item.kind is PlayoutKind.SILENCE
    assert len(chunk.pcm) == 160 and not chunk.pcm.any()
