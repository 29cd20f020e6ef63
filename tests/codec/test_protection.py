"""Receiver reports (docs/protocol.md §9), reception measurement and the sender's policy."""

from __future__ import annotations

import pytest

from codec.errors import CodecConfigError
from codec.frame import VoiceFrame
from codec.protection import (
    ProtectionController,
    ProtectionPolicy,
    ProtectMode,
    ReceiverReport,
    ReceptionMonitor,
)

FRAME = 960


def frame(seq: int, burst: int = 3, end: bool = False) -> VoiceFrame:
    return VoiceFrame(burst, seq, seq * FRAME, 20, (bytes([0x48]),), end=end)


def report(loss: float, sender: str = "T002", burst: int = 3, expected: int = 50) -> ReceiverReport:
    return ReceiverReport(burst, loss, 5.0, tg="grid-07", expected=expected, sender=sender)


# --- measuring reception --------------------------------------------------------------------


def test_monitor_counts_loss_and_ignores_reordering_and_duplicates() -> None:
    monitor = ReceptionMonitor(interval_s=1.0)
    now = 0.0
    arrived = [s for s in range(50) if s % 10 != 4]  # 10 % lost
    arrived[10], arrived[11] = arrived[11], arrived[10]  # one pair swapped
    for seq in arrived:
        now = seq * 0.02 + 0.05
        monitor.on_frame(frame(seq), now)
        monitor.on_frame(frame(seq), now)  # duplicate
        assert monitor.poll(now, tg="grid-07") is None or seq >= 49
    first = monitor.poll(1.06, tg="grid-07")
    assert first is not None
    # Only messages three behind the newest are judged: 0..46, of which 5 are missing.
    assert (first.expected, first.received) == (47, 42)
    assert first.loss_pct == pytest.approx(100 * 5 / 47)
    assert first.jitter_ms < 1.0  # constant network delay
    monitor.on_frame(frame(50, end=True), 1.1)
    final = monitor.poll(1.1, tg="grid-07")  # the END makes the last report due at once
    assert final is not None and (final.expected, final.received) == (4, 4)
    assert monitor.poll(5.0, tg="grid-07") is None  # nothing new


def test_monitor_jitter_follows_rfc3550() -> None:
    monitor = ReceptionMonitor()
    for seq in range(200):
        monitor.on_frame(frame(seq), seq * 0.02 + (0.02 if seq % 2 else 0.0))
    result = monitor.poll(10.0, call="T001")
    assert result is not None
    assert result.jitter_ms == pytest.approx(20.0, abs=0.5)


def test_monitor_restarts_with_each_burst() -> None:
    monitor = ReceptionMonitor()
    for seq in range(10):
        monitor.on_frame(frame(seq, burst=1), seq * 0.02)
    for seq in range(5, 60):  # 0..4 of burst 2 never arrived: sequence numbers start at 0
        monitor.on_frame(frame(seq, burst=2), 1 + seq * 0.02)
    result = monitor.poll(3.0, tg="all")
    assert result is not None and result.burst == 2
    assert result.expected == 57 and result.received == 52


# --- the sender's policy --------------------------------------------------------------------


def test_auto_protects_with_redundancy_within_the_cap_and_relaxes_slowly() -> None:
    controller = ProtectionController(ProtectionPolicy(bitrate=16000, max_bitrate_on_air=32000))
    clean = controller.settings(0.0)
    assert (clean.bitrate, clean.fec, clean.red, clean.expected_loss_pct) == (
        16000,
        False,
        False,
        0,
    )
    lossy = controller.on_report(report(10.0), 1.0)
    assert lossy.red and not lossy.fec and lossy.bitrate == 16000
    assert lossy.bitrate_on_air <= 32000
    for second in range(2, 6):  # clean again, but not yet for long enough
        assert controller.on_report(report(0.0), float(second)).red
    relaxed = [controller.on_report(report(0.0), float(s)).red for s in range(6, 30)]
    assert relaxed[-1] is False
    assert relaxed.index(False) >= 3  # hysteresis: not at the first clean report


def test_auto_adds_fec_when_the_cap_allows_two_deep_protection() -> None:
    policy = ProtectionPolicy(bitrate=24000, max_bitrate_on_air=48000)
    settings = ProtectionController(policy).on_report(report(8.0), 1.0)
    assert settings.red and settings.fec and settings.bitrate == 24000
    assert settings.expected_loss_pct == 8


@pytest.mark.parametrize(
    ("cap", "expect"),
    [
        (24000, (12000, False, True)),  # RED with a smaller primary
        (20000, (20000, True, False)),  # RED does not fit: FEC alone
        (16000, (16000, False, False)),  # nothing fits
    ],
)
def test_auto_respects_the_cap(cap: int, expect: tuple[int, bool, bool]) -> None:
    policy = ProtectionPolicy(bitrate=16000, max_bitrate_on_air=cap)
    settings = ProtectionController(policy).on_report(report(10.0), 1.0)
    assert (settings.bitrate, settings.fec, settings.red) == expect
    assert settings.bitrate_on_air <= cap


def test_red_also_budgets_red2_copies_unless_depth_one_or_with_fec() -> None:
    assert ProtectionController(ProtectionPolicy()).settings(0.0).red2_bitrate == 0  # clean
    lossy = ProtectionController(ProtectionPolicy()).on_report(report(10.0), 1.0)
    assert lossy.red and (lossy.red2_bitrate, lossy.max_bitrate_on_air) == (8000, 32000)
    depth1 = ProtectionController(ProtectionPolicy(red_depth=1)).on_report(report(10.0), 1.0)
    assert depth1.red and depth1.red2_bitrate == 0
    wide = ProtectionPolicy(bitrate=24000, max_bitrate_on_air=48000)
    both = ProtectionController(wide).on_report(report(8.0), 1.0)
    assert both.fec and both.red2_bitrate == 0  # the RED copy's LBRR already reaches two back


def test_worst_listener_counts_and_stale_ones_expire() -> None:
    policy = ProtectionPolicy(report_timeout_s=10.0, release_hold_s=0.0)
    controller = ProtectionController(policy)
    controller.on_report(report(12.0, sender="T002"), 0.0)
    controller.on_report(report(0.0, sender="T003"), 1.0)
    assert controller.loss_estimate_pct == pytest.approx(12.0)
    assert controller.settings(5.0).red
    assert not controller.settings(11.0).red  # T002 went quiet: its report expired


@pytest.mark.parametrize("mode", list(ProtectMode))
def test_forced_modes(mode: ProtectMode) -> None:
    controller = ProtectionController(ProtectionPolicy(mode=mode))
    settings = controller.settings(0.0)
    assert settings.red == (mode is ProtectMode.RED)
    assert settings.fec == (mode is ProtectMode.FEC)
    if mode is ProtectMode.FEC:
        assert settings.bitrate >= 20000 and settings.expected_loss_pct >= 5


def test_bad_policy_rejected() -> None:
    with pytest.raises(CodecConfigError):
        ProtectionPolicy(bitrate=16000, max_bitrate_on_air=8000)
    with pytest.raises(CodecConfigError):
        ProtectionPolicy(fec_on_pct=5.0, red_on_pct=1.0)
    with pytest.raises(CodecConfigError):
        ProtectionPolicy(red_depth=3)
    with pytest.raises(CodecConfigError):
        ProtectionPolicy(red2_bitrate=4000)
    with pytest.raises(CodecConfigError):
        ReceptionMonitor(interval_s=0)
