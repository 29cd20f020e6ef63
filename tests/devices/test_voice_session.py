"""devices.voice.VoiceSession, sans-I/O: reports out while listening, forwarded reports in."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from codec.frame import VoiceFrame
from codec.jitter import JitterConfig
from codec.opus import Pcm16
from codec.protection import ProtectionPolicy, ProtectMode
from devices.values import ScanList, SessionError, forwarded_report
from devices.voice import VoiceSession

RATE = 16000
CHUNK = RATE // 50  # 20 ms


def tone(seconds: float, hz: float = 440.0) -> Pcm16:
    t = np.arange(int(seconds * RATE)) / RATE
    return (6000 * np.sin(2 * np.pi * hz * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(
        np.int16
    )


def burst_frames(
    session: VoiceSession, burst: int, seconds: float, t0: float = 0.0
) -> list[tuple[float, VoiceFrame]]:
    """(capture time, frame) of one burst, talking 20 ms at a time."""
    pcm = tone(seconds)
    session.start_talk(burst, t0, key="grid-01")
    out: list[tuple[float, VoiceFrame]] = []
    for i in range(0, len(pcm), CHUNK):
        now = t0 + (i + CHUNK) / RATE
        out += [(now, f) for f in session.talk(pcm[i : i + CHUNK], now)]
    end_at = t0 + len(pcm) / RATE
    end = session.end_talk(end_at)
    assert end is not None and end.end
    out.append((end_at, end))
    return out


def rr(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "v": 1,
        "type": "rr",
        "tg": "grid-01",
        "burst": 5,
        "loss_pct": 10.0,
        "jitter_ms": 4.0,
        "expected": 50,
        "received": 45,
        "interval_ms": 1000,
        "from": "T002",
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


def test_a_forwarded_report_turns_on_redundancy_from_the_next_message() -> None:
    talker = VoiceSession(RATE)
    talker.start_talk(5, 0.0, key="grid-01")
    before = talker.talk(tone(0.1), 0.1)
    assert before and all(f.redundant is None for f in before)
    assert talker.on_forwarded(rr(), 0.1)
    assert talker.counters.reports_applied == 1
    after = talker.talk(tone(0.1), 0.2)
    assert after and all(f.redundant is not None for f in after)
    assert talker.protection(0.2).red
    talker.end_talk(0.2)
    # The controller outlives the burst: the next one is protected from its second message.
    frames = [f for _, f in burst_frames(talker, 6, 0.2, t0=1.0)]
    assert frames[0].redundant is None and all(f.redundant is not None for f in frames[1:-1])


def test_a_clean_report_keeps_the_talker_plain_and_policy_off_never_protects() -> None:
    talker = VoiceSession(RATE)
    talker.on_forwarded(rr(loss_pct=0.0, received=50), 0.0)
    assert not any(f.redundant for _, f in burst_frames(talker, 5, 0.3))
    plain = VoiceSession(RATE, policy=ProtectionPolicy(mode=ProtectMode.OFF))
    plain.on_forwarded(rr(loss_pct=30.0), 0.0)
    assert plain.counters.reports_applied == 1
    assert not any(f.redundant or f.fec for _, f in burst_frames(plain, 5, 0.3))


def test_other_control_messages_are_not_reports_and_bad_reports_are_counted_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    talker = VoiceSession(RATE)
    assert not talker.on_forwarded({"v": 1, "type": "floor_idle", "tg": "grid-01"}, 0.0)
    caplog.set_level(logging.WARNING)
    for bad in (rr(**{"from": None}), rr(loss_pct=140), rr(burst=0), rr(tg=None)):
        assert talker.on_forwarded(bad, 0.0)
    assert talker.counters.reports_rejected == 4 and talker.counters.reports_applied == 0
    assert len([r for r in caplog.records if "receiver report" in r.getMessage()]) == 1
    assert not talker.protection(0.0).red


def test_forwarded_report_of_a_private_call_names_the_reporter() -> None:
    report = forwarded_report(rr(tg=None, call="T002", late_pct=2.5))
    assert report.call == "T002" and report.sender == "T002" and report.late_pct == 2.5
    with pytest.raises(SessionError):
        forwarded_report(rr(jitter_ms="high"))


def listen(
    listener: VoiceSession, frames: list[tuple[float, VoiceFrame]], lost: set[int], key: str
) -> list[dict[str, Any]]:
    reports = []
    for at, frame in frames:
        if frame.seq in lost:
            continue
        report = listener.hear(key, frame, at + 0.03)
        if report is not None:
            reports.append(report)
    return reports


def test_a_listener_reports_each_second_and_at_the_end_of_the_burst() -> None:
    frames = burst_frames(VoiceSession(RATE), 9, 2.5)
    listener = VoiceSession(RATE)
    lost = set(range(5, 100, 10))  # one message in ten
    reports = listen(listener, frames, lost, "grid-01")
    assert len(reports) == 3  # after 1 s, after 2 s, at END
    assert all(r["type"] == "rr" and r["tg"] == "grid-01" and r["burst"] == 9 for r in reports)
    expected = sum(r["expected"] for r in reports)
    received = sum(r["received"] for r in reports)
    assert expected == len(frames) and expected - received == len(lost & {f.seq for _, f in frames})
    assert 8.0 <= reports[0]["loss_pct"] <= 12.0
    assert listener.counters.reports_sent == 3
    assert listener.report_due(100.0) is None  # nothing new to judge: no report


def test_reports_on_a_private_call_name_the_peer() -> None:
    frames = burst_frames(VoiceSession(RATE), 3, 0.5)
    reports = listen(VoiceSession(RATE), frames, set(), "call:T001")
    assert reports and reports[-1]["call"] == "T001" and "tg" not in reports[-1]


def test_the_loop_listener_to_talker_raises_protection() -> None:
    """The §9 loop without a network: listener report -> (gateway adds `from`) -> talker."""
    talker, listener = VoiceSession(RATE), VoiceSession(RATE)
    frames = burst_frames(talker, 11, 1.5)
    reports = listen(listener, frames, set(range(3, 80, 7)), "grid-01")
    for report in reports:
        assert talker.on_forwarded({**report, "from": "T002"}, 2.0)
    assert talker.protection(2.0).red and talker.counters.reports_applied == len(reports)


def test_one_call_plays_at_a_time() -> None:
    first = burst_frames(VoiceSession(RATE), 1, 0.3)
    second = burst_frames(VoiceSession(RATE), 2, 0.3)
    listener = VoiceSession(RATE)
    listener.hear("grid-01", first[0][1], 0.0)
    listener.hear("grid-02", second[1][1], 0.0)  # not a START: the playing call keeps it
    assert listener.playing_key == "grid-01" and listener.counters.frames_ignored == 1
    listener.hear("grid-02", second[0][1], 0.01)  # a new burst takes over
    assert listener.playing_key == "grid-02"
    listener.ended("grid-02")
    assert listener.playing_key is None
    # With a scan list, its priorities decide.
    scanning = VoiceSession(RATE, scan=ScanList("grid-01", ["grid-02"]))
    scanning.hear("grid-02", second[0][1], 0.0)
    scanning.hear("grid-01", first[0][1], 0.0)  # the selected talkgroup interrupts
    scanning.hear("grid-02", second[1][1], 0.02)
    assert scanning.playing_key == "grid-01" and scanning.counters.frames_ignored == 1


def _late_packets(listener: VoiceSession, phase_s: float, stall_at: float) -> int:
    """Two bursts over a clean path (1 ms), the second with a 15 ms scheduling stall at
    `stall_at`: what arrives during it comes when it ends. The card pulls every 20 ms."""
    talker = VoiceSession(RATE)
    arrivals: list[tuple[float, VoiceFrame]] = []
    for burst, t0 in ((1, 0.0), (2, 3.0)):
        for at, frame in burst_frames(talker, burst, 2.0, t0=t0):
            at += 0.001
            if stall_at <= at < stall_at + 0.015:
                at = stall_at + 0.015
            arrivals.append((at, frame))
    pulls = [phase_s + k * 0.02 for k in range(int(6.0 / 0.02))]
    events: list[tuple[float, int, VoiceFrame | None]] = [(t, 0, f) for t, f in arrivals]
    events += [(t, 1, None) for t in pulls]
    events.sort(key=lambda e: (e[0], e[1]))
    for now, _, arrived in events:  # arrivals (0) before pulls (1) at the same instant
        if arrived is not None:
            listener.hear("grid-01", arrived, now)
        else:
            listener.pull(now)
    return listener.player.jitter.late_discarded


def test_a_terminal_plays_through_a_scheduling_stall_on_a_clean_path() -> None:
    phases = [k * 0.0025 for k in range(8)]
    stall = 4.0
    bare = [_late_packets(VoiceSession(RATE, jitter=JitterConfig()), p, stall) for p in phases]
    assert max(bare) > 0  # a buffer that plays at the measured few ms loses packets to it
    assert [_late_packets(VoiceSession(RATE), p, stall) for p in phases] == [0] * len(phases)
