"""Opus wrapper: round trips, every setting read back, and each opuslib workaround proven."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import opuslib
import opuslib.api.ctl as opus_ctl
import opuslib.api.encoder as opus_enc
import pytest
from pesq import pesq

from codec.errors import CodecConfigError, OpusCodecError, OpusPacketError
from codec.opus import (
    TOC_SAMPLES,
    EncoderSettings,
    OpusDecoder,
    OpusEncoder,
    Pcm16,
    packet_duration,
    silence_packet,
)
from codec.pcm import frames_of

Speech = Callable[[str], Pcm16]


def encode_all(encoder: OpusEncoder, pcm: Pcm16) -> list[bytes]:
    return [encoder.encode(frame) for frame in frames_of(pcm, encoder.frame_samples)]


def test_round_trip_quality(speech: Speech) -> None:
    pcm = speech("en")
    encoder = OpusEncoder(EncoderSettings(bitrate=24000))
    decoder = OpusDecoder(16000)
    out = np.concatenate([decoder.decode(p) for p in encode_all(encoder, pcm)])
    assert len(out) >= len(pcm)
    assert pesq(16000, pcm, out[: len(pcm)], "wb") > 3.5


@pytest.mark.parametrize("frame_ms", [10, 20, 40, 60])
@pytest.mark.parametrize("rate", [8000, 16000])
def test_frame_durations_and_rates(speech: Speech, frame_ms: int, rate: int) -> None:
    pcm = speech("cmn")[: 16000 // 2]
    if rate == 8000:
        pcm = pcm[::2].copy()  # crude, fine for a size check
    encoder = OpusEncoder(EncoderSettings(sample_rate=rate, frame_ms=frame_ms, bitrate=12000))
    decoder = OpusDecoder(rate)
    for packet in encode_all(encoder, pcm):
        assert packet_duration(packet) == 48 * frame_ms
        assert len(decoder.decode(packet)) == rate * frame_ms // 1000


def test_every_setting_reads_back_from_libopus() -> None:
    settings = EncoderSettings(
        bitrate=24000, complexity=7, expected_loss_pct=12, inband_fec=True, dtx=True, vbr=False
    )
    encoder = OpusEncoder(settings)
    got = encoder.readback()
    assert (got.bitrate, got.complexity, got.expected_loss_pct) == (24000, 7, 12)
    assert got.inband_fec and got.dtx and not got.vbr
    assert got.application == opuslib.APPLICATION_VOIP
    encoder.update(inband_fec=False, dtx=False, bitrate=8000, expected_loss_pct=0)
    got = encoder.readback()
    assert not got.inband_fec and not got.dtx
    assert (got.bitrate, got.expected_loss_pct) == (8000, 0)


def test_lookahead_gives_pre_skip_at_48k() -> None:
    encoder = OpusEncoder(EncoderSettings(sample_rate=16000))
    assert encoder.lookahead > 0
    assert encoder.pre_skip == encoder.lookahead * 3


def test_bitrate_setting_changes_packet_sizes(speech: Speech) -> None:
    pcm = speech("en")
    low = encode_all(OpusEncoder(EncoderSettings(bitrate=8000)), pcm)
    high = encode_all(OpusEncoder(EncoderSettings(bitrate=32000)), pcm)
    assert sum(map(len, high)) > 2.5 * sum(map(len, low))


# --- the opuslib 3.0.1 defects, and proof that the workarounds take effect -----------------


def test_opuslib_defects_still_present() -> None:
    """If these start failing, opuslib was fixed and the workarounds can be revisited."""
    encoder = opuslib.Encoder(16000, 1, "voip")
    with pytest.raises(TypeError):
        encoder.inband_fec = 1
    encoder.dtx = 1  # only creates a Python attribute
    assert opus_enc.encoder_ctl(encoder.encoder_state, opus_ctl.get_dtx) == 0
    with pytest.raises(TypeError):
        opuslib.Decoder(16000, 1).decode(None, 320)


def _recovery_error(speech: Speech, fec: bool, loss_pct: int, bitrate: int) -> tuple[float, float]:
    """Lose every 5th packet; return the error energy of FEC-decoded and of concealed frames.

    Errors are measured against a decoder that lost nothing, so only recovery is judged.
    """
    pcm = speech("en")
    settings = EncoderSettings(bitrate=bitrate, inband_fec=fec, expected_loss_pct=loss_pct)
    packets = encode_all(OpusEncoder(settings), pcm)
    clean = OpusDecoder(16000)
    reference = [clean.decode(p) for p in packets]
    with_fec, with_plc = OpusDecoder(16000), OpusDecoder(16000)
    fec_error = plc_error = 0.0
    for index, packet in enumerate(packets[:-1]):
        if index % 5 == 2:
            samples = len(reference[index])
            recovered = with_fec.decode_fec(packets[index + 1], samples)
            concealed = with_plc.conceal(samples)
            truth = reference[index].astype(np.float64)
            fec_error += float(np.sum((recovered - truth) ** 2))
            plc_error += float(np.sum((concealed - truth) ** 2))
        else:
            with_fec.decode(packet)
            with_plc.decode(packet)
    return fec_error, plc_error


def test_inband_fec_really_emits_lbrr(speech: Speech) -> None:
    fec_error, plc_error = _recovery_error(speech, fec=True, loss_pct=10, bitrate=24000)
    assert fec_error < 0.5 * plc_error  # LBRR recovers far better than concealment


def test_without_fec_the_fec_decode_is_only_concealment(speech: Speech) -> None:
    fec_error, plc_error = _recovery_error(speech, fec=False, loss_pct=10, bitrate=24000)
    assert fec_error == pytest.approx(plc_error, rel=1e-6)


def test_fec_needs_an_expected_loss(speech: Speech) -> None:
    """libopus codes LBRR only when told to expect loss: the loss setting takes effect too."""
    fec_error, plc_error = _recovery_error(speech, fec=True, loss_pct=0, bitrate=24000)
    assert fec_error == pytest.approx(plc_error, rel=1e-6)


def test_no_lbrr_below_about_20_kbps(speech: Speech) -> None:
    fec_error, plc_error = _recovery_error(speech, fec=True, loss_pct=10, bitrate=14000)
    assert fec_error == pytest.approx(plc_error, rel=0.05)  # at most stray LBRR frames


def test_dtx_really_shrinks_silence(speech: Speech) -> None:
    pcm = np.concatenate([speech("en")[:16000], np.zeros(32000, dtype=np.int16)])
    sizes = {}
    for dtx in (False, True):
        encoder = OpusEncoder(EncoderSettings(dtx=dtx))
        packets = encode_all(encoder, pcm)
        silent = packets[-75:]  # the last 1.5 s are digital silence
        sizes[dtx] = sum(map(len, silent))
        if dtx:
            assert encoder.in_dtx
            assert sum(len(p) <= 2 for p in silent) > 60
    assert sizes[True] < 0.5 * sizes[False]


def test_concealment_with_empty_bytes_extrapolates(speech: Speech) -> None:
    packets = encode_all(OpusEncoder(), speech("en")[:16000])
    decoder = OpusDecoder(16000)
    for packet in packets[:30]:
        decoder.decode(packet)
    concealed = decoder.conceal(320)
    assert concealed.shape == (320,)
    assert np.abs(concealed).max() > 0  # real PLC continues the signal; silence would be 0


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"bitrate": 7000},
        {"bitrate": 40000},
        {"sample_rate": 44100},
        {"frame_ms": 30},
        {"complexity": 11},
        {"expected_loss_pct": 101},
    ],
)
def test_bad_settings_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises(CodecConfigError):
        EncoderSettings(**changes)


def test_bad_pcm_and_packets_rejected() -> None:
    encoder = OpusEncoder()
    with pytest.raises(CodecConfigError):
        encoder.encode(np.zeros(100, dtype=np.int16))
    with pytest.raises(CodecConfigError):
        encoder.encode(b"\x00" * 10)
    with pytest.raises(CodecConfigError):
        encoder.configure(EncoderSettings(sample_rate=8000))
    decoder = OpusDecoder(16000)
    with pytest.raises(OpusPacketError):
        decoder.decode(b"")
    with pytest.raises(OpusCodecError):
        decoder.decode(bytes([0x4B, 0xFF]))  # code 3 with 63 frames: invalid
    with pytest.raises(CodecConfigError):
        decoder.conceal(123)


def test_packet_duration_from_toc() -> None:
    assert packet_duration(bytes([9 << 3])) == 960  # SILK WB 20 ms, one frame
    assert packet_duration(bytes([(9 << 3) | 1, 0])) == 1920  # two frames
    assert packet_duration(bytes([(31 << 3) | 3, 4])) == 3840  # CELT 20 ms x 4
    for bad in (b"", bytes([(9 << 3) | 3]), bytes([(9 << 3) | 3, 0]), bytes([(11 << 3) | 3, 3])):
        with pytest.raises(OpusPacketError):
            packet_duration(bad)


def test_toc_table_matches_packet_duration() -> None:
    """The writer's table lookup gives what the full TOC parse gives (code 3 excluded: 0)."""
    for toc in range(256):
        expected = 0 if toc & 3 == 3 else packet_duration(bytes([toc, 1]))
        assert TOC_SAMPLES[toc] == expected


@pytest.mark.parametrize("ms", [20, 40, 120])
def test_silence_packets_decode_to_concealment(ms: int) -> None:
    packet = silence_packet(48 * ms)
    assert packet_duration(packet) == 48 * ms
    assert len(OpusDecoder(16000).decode(packet)) == 16 * ms
    with pytest.raises(CodecConfigError):
        silence_packet(48 * 30)


def test_reencode_from_a_mark_is_exact_at_the_same_bitrate_and_leaves_the_stream_alone(
    speech: Speech,
) -> None:
    """The byte copy of libopus' state encodes like the original and never disturbs it."""
    frames = frames_of(speech("en"), 320)
    marked = OpusEncoder(EncoderSettings(bitrate=16000))
    plain = OpusEncoder(EncoderSettings(bitrate=16000))
    same, cheaper = 0, 0
    for index, frame in enumerate(frames):
        marked.mark()
        packet = marked.encode(frame)
        assert packet == plain.encode(frame)  # marking/re-encoding never changes the stream
        if index % 2:
            same += marked.reencode(frame, 16000) == packet
        else:
            cheaper += len(marked.reencode(frame, 8000)) < len(packet)
    assert same == len(frames) // 2  # bit-exact: the copy is the state, not an approximation
    assert cheaper > 0.8 * ((len(frames) + 1) // 2)  # silent frames are tiny either way


def test_low_bitrate_reencodings_decode_in_the_primary_stream_better_than_concealment(
    speech: Speech,
) -> None:
    """What RED2 relies on: a copy coded from the same state fits the receiver's decoder."""
    pcm = speech("cmn")
    frames = frames_of(pcm, 320)
    encoder = OpusEncoder(EncoderSettings(bitrate=16000))
    packets, copies = [], []
    for frame in frames:
        encoder.mark()
        packets.append(encoder.encode(frame))
        copies.append(encoder.reencode(frame, 8000))
    lost = set(range(5, len(frames), 7))

    def score(replacement: str) -> float:
        decoder = OpusDecoder(16000)
        out = []
        for index, packet in enumerate(packets):
            if index not in lost:
                out.append(decoder.decode(packet))
            elif replacement == "copy":
                out.append(decoder.decode(copies[index]))
            else:
                out.append(decoder.conceal(320))
        return float(pesq(16000, pcm, np.concatenate(out)[: len(pcm)], "wb"))

    assert score("copy") > score("conceal") + 0.5


def test_reencode_needs_a_mark_and_a_valid_bitrate(speech: Speech) -> None:
    frame = frames_of(speech("en"), 320)[10]
    encoder = OpusEncoder()
    with pytest.raises(CodecConfigError):
        encoder.reencode(frame, 8000)
    encoder.mark()
    encoder.encode(frame)
    with pytest.raises(CodecConfigError):
        encoder.reencode(frame, 4000)
    encoder.reencode(frame, 8000)
    with pytest.raises(CodecConfigError):
        encoder.reencode(frame, 8000)  # one re-encoding per mark
    encoder.mark()
    encoder.reset()
    with pytest.raises(CodecConfigError):
        encoder.reencode(frame, 8000)  # a reset forgets the mark
