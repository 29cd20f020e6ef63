"""The simulator's live-audio talkers and decoding probes (docs/protocol.md §9), sans-I/O."""

from __future__ import annotations

import json

from codec.frame import encode_frame
from firmware_sim.model import FirmwareConfig, Send, SendFrame
from firmware_sim.voice import wall_to_ts
from tests.firmware_sim.helpers import WALL0, Rig
from tests.firmware_sim.test_firmware import request_of

TG = "grid-01"


def test_a_live_talker_protects_its_speech_once_a_report_is_forwarded() -> None:
    rig = Rig(FirmwareConfig(live_voice=True))
    rig.connect()
    assert rig.fw.press(1.0, hold_s=2.0)
    pending = request_of(rig.take(), "floor_request")
    rig.feed("down", 1.03, type="floor_granted", re=pending.id, tg=TG, burst=42, max_ms=30000)
    now = rig.run(1.5, 1.03)
    before = [e.frame for e in rig.take() if isinstance(e, SendFrame)]
    # Encoded at run time from the reel's speech, 20 ms messages at real-time pace.
    assert len(before) == 23 and [f.seq for f in before] == list(range(23))
    assert before[0].timestamp == wall_to_ts(WALL0 + 1.03)
    assert not any(f.redundant for f in before)
    # A listener's report, forwarded by the gateway (§9.2): 12 % loss.
    rig.feed("down", now, type="rr", tg=TG, burst=42, loss_pct=12.0, jitter_ms=8.0,
             expected=50, received=44, **{"from": "T002"})  # fmt: skip
    assert rig.fw.stats.reports_applied == 1
    rig.run(3.2, now)
    after = [e.frame for e in rig.take() if isinstance(e, SendFrame)]
    audio = [f for f in after if f.packets]
    assert audio and all(f.redundant is not None for f in audio)
    assert after[-1].end and rig.fw.stats.frames_sent == len(before) + len(after)


def test_a_probe_reports_what_it_hears_as_frames_arrive() -> None:
    talker = Rig(FirmwareConfig(live_voice=True), device="T002")
    talker.connect()
    assert talker.fw.press(1.0, hold_s=2.5)
    pending = request_of(talker.take(), "floor_request")
    talker.feed("down", 1.0, type="floor_granted", re=pending.id, tg=TG, burst=7, max_ms=30000)
    talker.run(4.0, 1.0)
    frames = [e.frame for e in talker.take() if isinstance(e, SendFrame)]
    probe = Rig(FirmwareConfig(probe=True))
    probe.connect()
    probe.feed("tg/grid-01/ctrl", 1.0, type="floor_taken", tg=TG, by="T002", burst=7)
    sent = []
    for n, frame in enumerate(frames):
        if n % 10 == 4:
            continue  # lost on the way
        now = 1.05 + n * 0.02
        probe.fw.tick(now)
        probe.fw.on_incoming(
            probe.session.on_message("xixin/v1/tg/grid-01/down", encode_frame(frame)), now
        )
        sent += [json.loads(e.message.payload) for e in probe.take() if isinstance(e, Send)]
    reports = [m for m in sent if m["type"] == "rr"]
    assert len(reports) == 3  # after 1 s, after 2 s, and at the END
    assert all(r["tg"] == TG and r["burst"] == 7 for r in reports)
    assert sum(r["expected"] for r in reports) == len(frames)
    lost = sum(1 for n in range(len(frames)) if n % 10 == 4)
    assert sum(r["expected"] - r["received"] for r in reports) == lost
    assert probe.fw.stats.reports_sent == 3
