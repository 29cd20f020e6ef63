"""The control plane's parts on their own: each sans-I/O, `now` passed in, output collected."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from gateway.control.affiliation import Affiliations, SosAlarms
from gateway.control.calls import PrivateCalls
from gateway.control.commands import Commands
from gateway.control.output import Output
from gateway.control.presence import PresenceTable
from gateway.control.reports import ReceiverReportThrottle
from gateway.control.timers import FloorTimers
from gateway.directory import DeviceInfo
from gateway.floor import MAX_BURST_ID, Floor, FloorConfig, Priority
from gateway.floors import FloorTable
from gateway.metrics import Counters
from protocol.control import (
    Affiliate,
    CommandAck,
    ControlError,
    DeviceStatus,
    ReceiverReport,
    Sos,
)

T001 = DeviceInfo("T001", "grid-01", "officer", True, frozenset({"grid-01"}))


def make_output() -> Output:
    return Output(Counters(), logging.getLogger("test"))


def replies(out: Output, device: str) -> list[dict[str, Any]]:
    topic = f"xixin/v1/dev/{device}/ctrl/down"
    return [json.loads(o.payload) for o in out.outbox if o.topic == topic]


def test_presence_emits_an_event_only_when_the_state_changes() -> None:
    out = make_output()
    table = PresenceTable(out)
    assert table.get("T001").state == "unknown"
    assert table.update("T001", DeviceStatus("online", None, 80), 1000)
    assert not table.update("T001", DeviceStatus("online", None, 70), 2000)
    assert table.get("T001").battery == 70 and table.get("T001").since_ms == 1000
    assert table.online() == 1 and table.devices() == ["T001"]
    assert [(e.kind, e.data["state"]) for e in out.events] == [("presence", "online")]


def talking_floor(talker: str) -> tuple[Output, FloorTable, Floor]:
    """An output, and a table with talkgroup grid-01 whose floor `talker` holds."""
    out = make_output()
    floors = FloorTable()
    floor = Floor("grid-01")
    floors.add_talkgroup("grid-01", floor)
    floor.request(talker, Priority.NORMAL, 0.0, "r")
    return out, floors, floor


def test_affiliation_keeps_what_the_device_may_have_and_tells_who_talks() -> None:
    out, floors, _ = talking_floor("T002")
    affiliations = Affiliations(floors, out)
    affiliations.affiliate(T001, Affiliate("a1", ("grid-01", "grid-99")), 5)
    [affiliated, taken] = replies(out, "T001")
    assert affiliated["tgs"] == ["grid-01"] and affiliated["rejected"] == ["grid-99"]
    assert taken["type"] == "floor_taken" and taken["by"] == "T002"
    assert affiliations.count("grid-01") == 1 and affiliations.by_device["T001"] == {"grid-01"}


def test_sos_is_active_until_cleared() -> None:
    out = make_output()
    alarms = SosAlarms(out)
    alarms.handle(T001, Sos("s1", True), 1)
    assert "T001" in alarms
    alarms.handle(T001, Sos("s2", False), 2)
    assert "T001" not in alarms and [m["type"] for m in replies(out, "T001")] == ["sos_ack"] * 2


def test_commands_are_numbered_acked_and_stun_until_revived() -> None:
    out = make_output()
    commands = Commands(out)
    first, payload = commands.issue("T001", "stun", {})
    assert payload is not None
    assert first == "c1" and json.loads(payload)["cmd"] == "stun"
    assert "T001" in commands.stunned and commands.pending == {"c1": ("T001", "stun")}
    with pytest.raises(ControlError):
        commands.issue("T001", "text", {"id": "clash"})  # changes nothing
    assert commands.issue("T001", "revive", {})[0] == "c2" and not commands.stunned
    commands.ack("T001", CommandAck("c1", True, None), 3)
    assert "c1" not in commands.pending and out.events[-1].data["cmd"] == "stun"


def test_timers_give_due_keys_once_and_keep_the_earliest_wake_up() -> None:
    timers = FloorTimers()
    timers.schedule("a", 2.0)
    timers.schedule("a", 3.0)  # later: the earlier one stays
    timers.schedule("b", 1.0)
    assert timers.pending("a") == 2.0
    assert timers.due(0.5) == []
    assert timers.due(2.0) == ["b", "a"]
    assert timers.due(10.0) == [] and timers.pending("a") is None


def test_a_devices_calls_at_once_number_their_bursts_apart() -> None:
    # voice/down names no peer: T001 in two calls tells their frames apart by burst id (§2).
    floors = FloorTable()
    calls = PrivateCalls(floors, FloorConfig(), idle_s=60.0)
    first = floors[calls.open("T001", "T002")]
    second = floors[calls.open("T003", "T001")]
    first.request("T002", Priority.NORMAL, 0.0, "a")
    second.request("T003", Priority.NORMAL, 0.0, "b")
    assert first.burst != second.burst
    starts = [first.burst, second.burst]
    for k in range(4, 52):  # calls opened near in time start far apart
        floor = floors[calls.open("T001", f"T{k:03d}")]
        floor.request("T001", Priority.NORMAL, 0.0, "c")
        assert 1 <= floor.burst <= MAX_BURST_ID
        starts.append(floor.burst)
    gaps = [
        min(abs(a - b), MAX_BURST_ID - abs(a - b))
        for i, a in enumerate(starts)
        for b in starts[i + 1 :]
    ]
    assert len(starts) == 50 and min(gaps) >= 900


def test_calls_are_made_found_and_retired_keeping_their_numbering() -> None:
    floors = FloorTable()
    calls = PrivateCalls(floors, FloorConfig(), idle_s=60.0)
    assert calls.find("T004", "T001") is None
    key = calls.open("T004", "T001")
    assert key == "call:T001:T004" and calls.find("T001", "T004") == key
    floor = floors[key]
    floor.request("T001", Priority.NORMAL, 0.0, "r")
    burst = floor.burst
    floor.release("T001", 1.0, "x")
    assert calls.forget_at(key) == 61.0
    assert not calls.idle_for_long(key, 60.9) and calls.idle_for_long(key, 61.0)
    calls.retire(key)
    assert key not in floors
    assert floors[calls.open("T001", "T004")].request("T004", Priority.NORMAL, 2.0, "r")
    assert floors[key].burst == burst + 1


def test_a_report_on_a_released_burst_reaches_its_talker_while_the_tail_lasts() -> None:
    # A listener's last report is sent on the burst's END, after the talker's release (§9.1).
    out, floors, floor = talking_floor("T001")
    burst = floor.burst
    throttle = ReceiverReportThrottle(floors, out, window_s=0.5)

    def report(loss: float) -> ReceiverReport:
        return ReceiverReport("grid-01", None, burst, loss, 1.0, 0.0, {})

    floor.release("T001", 2.0, "x")
    throttle.report("T002", report(4.0), 2.05)
    assert [m["from"] for m in replies(out, "T001")] == ["T002"]
    throttle.report("T003", report(6.0), 2.2)  # waits for the window, which outlasts the tail
    assert throttle.waiting
    tail_end = 2.0 + floor.config.release_tail_s
    throttle.flush(tail_end)
    assert len(replies(out, "T001")) == 1 and not throttle.waiting
    throttle.report("T002", report(4.0), tail_end)
    assert out.counters.rejected == {"stale_rr": 2}
    floor.request("T002", Priority.NORMAL, 5.0, "r2")  # the next talker's own burst is current
    throttle.report("T003", ReceiverReport("grid-01", None, floor.burst, 1.0, 1.0, 0.0, {}), 5.1)
    assert [m["from"] for m in replies(out, "T002")] == ["T003"]


def test_receiver_reports_reach_the_talker_at_most_once_per_window() -> None:
    out, floors, floor = talking_floor("T001")
    throttle = ReceiverReportThrottle(floors, out, window_s=0.5)

    def report(loss: float) -> ReceiverReport:
        return ReceiverReport("grid-01", None, floor.burst, loss, 1.0, 0.0, {})

    throttle.report("T002", report(1.0), 1.0)
    throttle.report("T003", report(9.0), 1.1)  # waits for the window
    throttle.report("T002", report(5.0), 1.2)  # not the worst of the window
    assert throttle.waiting and len(replies(out, "T001")) == 1
    throttle.flush(1.5)
    forwarded = [m["from"] for m in replies(out, "T001")]
    assert forwarded == ["T002", "T003"] and not throttle.waiting
    throttle.report("T001", report(1.0), 3.0)  # the talker itself: stale
    assert out.counters.rejected == {"stale_rr": 1}
