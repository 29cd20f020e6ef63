"""The firmware state machine on an injected clock: every transition, no network."""

from __future__ import annotations

import json

from codec.frame import VoiceFrame, encode_frame
from devices.session import Outgoing, PendingRequest
from firmware_sim.battery import BatteryConfig
from firmware_sim.gps import GpsConfig
from firmware_sim.impairment import ImpairmentConfig
from firmware_sim.model import (
    Affiliate,
    Connect,
    Drop,
    FirmwareConfig,
    PowerOff,
    Send,
    SendBeacon,
    SendFrame,
    SendRequest,
    State,
    TalkPattern,
)
from firmware_sim.voice import wall_to_ts
from tests.firmware_sim.helpers import WALL0, Rig

TG = "grid-01"


def requests(effects: list[object]) -> list[dict[str, object]]:
    return [json.loads(e.message.payload) for e in effects if isinstance(e, SendRequest)]


def sent(effects: list[object]) -> list[dict[str, object]]:
    return [json.loads(e.message.payload) for e in effects if isinstance(e, Send)]


def request_of(effects: list[object], msg_type: str) -> PendingRequest:
    found = [
        e.pending for e in effects if isinstance(e, SendRequest) and e.pending.type == msg_type
    ]
    assert found, f"no {msg_type} request in {effects}"
    return found[-1]


def states(rig: Rig) -> list[str]:
    return [to for _, _, to in rig.fw.stats.transitions]


def test_boot_connect_affiliate_idle() -> None:
    rig = Rig(FirmwareConfig(boot_s=2.0))
    rig.fw.power_on(0.0)
    assert rig.fw.state is State.BOOT and rig.take() == []
    rig.fw.tick(2.0)
    assert rig.take() == [Connect()] and rig.fw.state is State.CONNECTING
    rig.fw.on_connected(2.3)
    assert rig.take() == [Affiliate(("grid-01", "area-renxi", "all"))]
    assert rig.fw.state is State.IDLE
    assert states(rig) == ["connecting", "idle"]


def test_talk_burst_at_real_time_pace_then_release() -> None:
    rig = Rig()
    rig.connect()
    assert rig.fw.press(1.0, hold_s=1.0)
    pending = request_of(rig.take(), "floor_request")
    rig.feed("down", 1.03, type="floor_granted", re=pending.id, tg=TG, burst=42, max_ms=30000)
    assert rig.fw.state is State.TRANSMITTING
    assert rig.fw.stats.access_ms.percentile(50) == 30.5
    now = rig.run(1.5, 1.03)
    frames = [e.frame for e in rig.take() if isinstance(e, SendFrame)]
    # 20 ms messages, each sent when its audio is complete: 23 by t = 1.5 (captured from 1.03).
    assert len(frames) == 23 and [f.seq for f in frames] == list(range(23))
    assert frames[0].start and frames[0].timestamp == wall_to_ts(WALL0 + 1.03)
    assert frames[1].timestamp - frames[0].timestamp == 960
    rig.run(2.2, now)
    effects = rig.take()
    frames = [e.frame for e in effects if isinstance(e, SendFrame)]
    assert len(frames) == 27 and frames[-1].end and all(f.burst == 42 for f in frames)
    assert requests(effects)[-1]["type"] == "floor_release"
    assert rig.fw.state is State.IDLE and rig.fw.stats.frames_sent == 50
    assert states(rig)[-2:] == ["transmitting", "idle"]


def test_listening_accounts_for_every_frame() -> None:
    rig = Rig()
    rig.connect()
    rig.feed("tg/grid-01/ctrl", 5.0, type="floor_taken", tg=TG, by="T002", burst=7)
    assert rig.fw.state is State.RECEIVING
    for seq in range(50):
        if seq in (10, 11):
            continue  # lost on the way
        frame = VoiceFrame(
            burst=7,
            seq=seq,
            timestamp=wall_to_ts(WALL0 + 5.0 + seq * 0.02),
            frame_ms=20,
            packets=(b"\xf8\xff\xfe",),
            end=seq == 49,
        )
        now = 5.06 + seq * 0.02
        rig.fw.on_incoming(
            rig.session.on_message("xixin/v1/tg/grid-01/down", encode_frame(frame)), now
        )
    rig.feed("tg/grid-01/ctrl", 6.1, type="floor_idle", tg=TG)
    assert rig.fw.state is State.IDLE
    rig.run(7.5, 6.1)
    totals = rig.fw.stats.meter.totals
    assert (totals.bursts, totals.frames_expected, totals.frames_received) == (1, 50, 48)
    assert round(totals.loss_pct, 1) == 4.0 and totals.late_entries == 0
    assert 59 <= (rig.fw.stats.meter.mouth_to_arrival.percentile(50) or 0) <= 61


def test_queued_then_granted_later_counts_the_queue_wait() -> None:
    rig = Rig()
    rig.connect()
    rig.fw.press(1.0, hold_s=0.5)
    pending = request_of(rig.take(), "floor_request")
    rig.feed("down", 1.02, type="floor_queued", re=pending.id, tg=TG, position=1)
    assert rig.fw.ptt is not None and rig.fw.ptt.phase == "queued"
    rig.feed("down", 3.0, type="floor_granted", re=pending.id, tg=TG, burst=3, max_ms=30000)
    assert rig.fw.state is State.TRANSMITTING
    assert rig.fw.stats.queue_wait_ms.percentile(50) == 2000.5
    assert rig.fw.stats.access_ms.total == 0 and rig.fw.stats.queued == 1


def test_preempted_with_grace_stops_early_and_releases() -> None:
    rig = Rig()
    rig.connect()
    rig.fw.press(1.0, hold_s=20.0)
    pending = request_of(rig.take(), "floor_request")
    rig.feed("down", 1.0, type="floor_granted", re=pending.id, tg=TG, burst=5, max_ms=30000)
    rig.feed("down", 2.0, type="floor_revoke", tg=TG, burst=5, reason="preempted", grace_ms=3000)
    assert rig.fw.state is State.TRANSMITTING, "finishes the sentence within the grace"
    rig.run(6.0, 2.0)
    effects = rig.take()
    assert requests(effects)[-1]["type"] == "floor_release"
    last = [e.frame for e in effects if isinstance(e, SendFrame)][-1]
    assert last.end and rig.fw.state is State.IDLE
    assert rig.fw.stats.revoked == {"preempted": 1}
    assert 4.4 <= rig.fw.stats.transitions[-1][0] <= 4.6


def test_emergency_talks_with_priority_and_stays_in_emergency() -> None:
    rig = Rig(FirmwareConfig(emergency_talk_s=1.0))
    rig.connect()
    rig.fw.set_sos(3.0, True)
    effects = rig.take()
    sos, floor = requests(effects)
    assert sos["type"] == "sos" and sos["active"] is True
    assert floor["type"] == "floor_request" and floor["emergency"] is True
    assert rig.fw.state is State.EMERGENCY
    pending = request_of(effects, "floor_request")
    rig.feed("down", 3.05, type="floor_granted", re=pending.id, tg=TG, burst=9, max_ms=30000)
    assert rig.fw.state is State.TRANSMITTING
    rig.run(4.2, 3.05)
    assert rig.fw.state is State.EMERGENCY
    rig.fw.set_sos(5.0, False)
    cancel = requests(rig.take())[-1]
    assert cancel["type"] == "sos" and cancel["active"] is False
    assert rig.fw.state is State.IDLE


def test_stun_blocks_talk_and_revive_restores() -> None:
    rig = Rig()
    rig.connect()
    rig.feed("down", 1.0, type="command", id="c1", cmd="stun")
    assert rig.fw.state is State.STUNNED
    assert sent(rig.take()) == [{"v": 1, "type": "ack", "re": "c1", "ok": True}]
    assert not rig.fw.press(2.0) and rig.fw.stats.blocked_presses == 1
    rig.feed("down", 3.0, type="command", id="c2", cmd="revive")
    assert rig.fw.state is State.IDLE and rig.fw.press(4.0)


def test_commands_text_assign_config_monitor() -> None:
    rig = Rig()
    rig.connect()
    rig.feed("down", 1.0, type="command", id="a", cmd="text", text="return to base")
    rig.feed("down", 1.0, type="command", id="b", cmd="assign", incident="I-7", grid="grid-02")
    rig.feed("down", 1.0, type="command", id="c", cmd="config", settings={"beacon_interval_s": 2})
    rig.feed("down", 1.0, type="command", id="d", cmd="config", settings={"volume": 3})
    rig.feed("down", 1.0, type="command", id="e", cmd="selfdestruct")
    acks = sent(rig.take())
    assert [(a["re"], a["ok"]) for a in acks] == [
        ("a", True),
        ("b", True),
        ("c", True),
        ("d", False),
        ("e", False),
    ]
    assert rig.fw.stats.texts == ["return to base"] and rig.fw.assignment is not None
    assert rig.fw.beacon_interval == 2.0
    rig.feed("down", 2.0, type="command", id="m", cmd="monitor", by="D001", seconds=3)
    effects = rig.take()
    assert sent(effects)[0]["re"] == "m"
    assert requests(effects)[0]["call"] == "D001"


def test_beacons_continue_offline_and_reconnect_after_the_outage() -> None:
    config = FirmwareConfig(gps=GpsConfig(adaptive=False, moving_interval_s=5.0, bad_fix_rate=0))
    rig = Rig(config)
    rig.connect()
    now = rig.run(30.0, 0.1)
    online = [e for e in rig.take() if isinstance(e, SendBeacon)]
    assert 5 <= len(online) <= 6
    rig.fw.go_offline(now, 60.0)
    assert rig.take() == [Drop()] and rig.fw.state is State.OFFLINE
    now = rig.run(89.0, now)
    offline = [e for e in rig.take() if isinstance(e, SendBeacon)]
    assert len(offline) == 12, "fixes keep coming while offline (queued by the client)"
    now = rig.run(91.0, now)
    assert Connect() in rig.take() and rig.fw.state is State.CONNECTING
    rig.fw.on_connected(91.2)
    assert rig.take() == [] and rig.fw.state is State.IDLE, "the client re-affiliates by itself"
    stamps = [b.beacon.ts for b in online + offline]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


def test_connection_lost_while_talking() -> None:
    rig = Rig(FirmwareConfig(talk=TalkPattern("continuous", gap_s=(0.5, 0.5))))
    rig.connect()
    rig.fw.press(1.0, hold_s=5.0)
    pending = request_of(rig.take(), "floor_request")
    rig.feed("down", 1.0, type="floor_granted", re=pending.id, tg=TG, burst=5, max_ms=30000)
    rig.fw.on_disconnected(2.0)
    assert rig.fw.state is State.OFFLINE and rig.fw.ptt is None
    rig.fw.on_connected(3.0)
    assert rig.fw.state is State.IDLE
    rig.run(3.6, 3.0)
    assert rig.fw.ptt is not None, "a busy talker goes on talking after the outage"


def test_no_reply_after_the_retries() -> None:
    rig = Rig()
    rig.connect()
    rig.fw.press(1.0)
    pending = request_of(rig.take(), "floor_request")
    _resend, expired = rig.session.poll(7.0)
    assert expired == [pending]
    rig.fw.on_expired(pending, 7.0)
    assert rig.fw.ptt is None and rig.fw.stats.no_reply == 1 and rig.fw.state is State.IDLE


def test_battery_alarm_then_power_off() -> None:
    config = FirmwareConfig(battery=BatteryConfig(start_pct=20.0, low_pct=15.0, speedup=100.0))
    rig = Rig(config)
    rig.connect()
    rig.run(60.0, 0.1)
    alarm = [r for r in requests(rig.take()) if r["type"] == "status_msg"]
    assert alarm and alarm[0]["code"] == "low_battery"
    rig.run(400.0, 60.0)
    assert PowerOff() in rig.take() and rig.fw.state is State.OFFLINE and rig.fw.powered_off


def test_poisson_talker_presses_by_itself_and_outages_happen() -> None:
    config = FirmwareConfig(
        talk=TalkPattern("poisson", rate_per_h=720.0),
        impairment=ImpairmentConfig(outage_every_s=100.0, outage_s=(5.0, 5.0)),
    )
    rig = Rig(config)
    rig.connect()
    rig.run_answered(600.0, 0.1)
    stats = rig.fw.stats
    # One press per 5 s on average, but not while talking (~4.7 s): roughly one per 10 s.
    assert 40 <= stats.presses <= 110
    assert stats.grants >= stats.presses - 3 and stats.bursts_sent == stats.grants
    assert 2 <= stats.outages <= 12
    assert abs(stats.talk_s / stats.bursts_sent - 4.7) < 1.5, "mean burst about 4.7 s"


def test_ack_outgoing_types() -> None:
    # Effects carry ready-to-publish messages.
    rig = Rig()
    rig.connect()
    rig.feed("down", 1.0, type="command", id="x", cmd="text", text="hi")
    (effect,) = rig.take()
    assert isinstance(effect, Send) and isinstance(effect.message, Outgoing)
    assert effect.message.topic == "xixin/v1/dev/T001/ctrl/up" and effect.message.qos == 1


def test_listening_hot_path_counts_like_the_normal_path() -> None:
    payloads = [
        encode_frame(
            VoiceFrame(
                burst=7,
                seq=seq,
                timestamp=wall_to_ts(WALL0 + 5.0 + seq * 0.02),
                frame_ms=20,
                packets=(b"\xf8\xff\xfe",),
                end=seq == 29,
            )
        )
        for seq in range(30)
        if seq != 4
    ]
    totals = []
    for fast in (False, True):
        rig = Rig()
        rig.connect()
        rig.feed("tg/grid-01/ctrl", 5.0, type="floor_taken", tg=TG, by="T002", burst=7)
        for payload in payloads + payloads[:2]:  # two duplicates
            if fast:
                assert rig.fw.listener.fast_frame(TG, payload)
            else:
                incoming = rig.session.on_message("xixin/v1/tg/grid-01/down", payload)
                rig.fw.on_incoming(incoming, 5.5)
        assert not rig.fw.listener.fast_frame("grid-09", payloads[0]), "not heard there: slow path"
        assert not rig.fw.listener.fast_frame(TG, b"\x02" + payloads[0][1:]), "bad version"
        rig.fw.stats.meter.close_all()
        t = rig.fw.stats.meter.totals
        totals.append((t.bursts, t.frames_expected, t.frames_received, t.duplicates))
    assert totals[0] == totals[1] == (1, 30, 29, 2)
    # The talker's own echo is dropped on the hot path as well.
    rig = Rig()
    rig.connect()
    rig.fw.press(1.0, hold_s=1.0)
    pending = request_of(rig.take(), "floor_request")
    rig.feed("down", 1.0, type="floor_granted", re=pending.id, tg=TG, burst=7, max_ms=30000)
    rig.fw.listener.active[TG] = 1.0
    assert rig.fw.listener.fast_frame(TG, payloads[0])
    assert rig.session.counters.own_echo == 1 and rig.fw.stats.meter.totals.frames_received == 0


def test_radio_check_and_status_commands_are_answered() -> None:
    rig = Rig(FirmwareConfig(impairment=ImpairmentConfig(loss_pct=12.0)))
    rig.connect()
    rig.feed("down", 1.0, type="command", id="r", cmd="radio_check")
    rig.feed("down", 1.0, type="command", id="s", cmd="status", code="return_to_base", text="now")
    check, status = sent(rig.take())
    assert check == {
        "v": 1, "type": "ack", "re": "r", "ok": True,
        "battery": rig.fw.battery.percent, "signal": 88,
    }  # fmt: skip
    assert (status["re"], status["ok"]) == ("s", True)
    assert rig.fw.stats.texts == ["[return_to_base] now"]


def test_sos_carries_the_last_good_fix() -> None:
    config = FirmwareConfig(gps=GpsConfig(adaptive=False, moving_interval_s=5.0, bad_fix_rate=0))
    rig = Rig(config)
    rig.connect()
    now = rig.run(12.0, 0.1)
    beacons = [e.beacon for e in rig.take() if isinstance(e, SendBeacon)]
    assert beacons
    rig.fw.set_sos(now, True)
    sos = next(r for r in requests(rig.take()) if r["type"] == "sos")
    assert (sos["lat"], sos["lon"]) == (beacons[-1].lat, beacons[-1].lon)
