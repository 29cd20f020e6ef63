"""The alarm queue's state machine as tables: raise/update/clear, acknowledge, close, and SOS
escalation by tier with an injected clock (no sleeping)."""

from __future__ import annotations

import pytest

from gateway.alarms.queue import (
    Alarm,
    AlarmError,
    AlarmPolicy,
    AlarmQueue,
    AlarmStateError,
    Position,
    UnknownAlarmError,
)
from protocol.org import default_org

ORG = default_org()
GRID = "grid-01"
AREA = ORG.parent(GRID)
CENTRE = ORG.centre.id
HERE = Position(30.1, 104.1, 99.0)


def queue(after: float | None = 60.0) -> AlarmQueue:
    return AlarmQueue(ORG.parent, AlarmPolicy(escalate_after_s=after))


def test_the_org_has_three_tiers_above_a_grid() -> None:
    assert AREA is not None and AREA != CENTRE and ORG.parent(AREA) == CENTRE
    assert ORG.parent(CENTRE) is None


def test_raise_acknowledge_close() -> None:
    q = queue()
    raised = q.raise_alarm("sos", "T001", GRID, 100.0, HERE)
    assert (raised.id, raised.state, raised.position, raised.active) == (
        1,
        "unattended",
        HERE,
        True,
    )
    acked = q.acknowledge(1, "wang", 110.0)
    assert (acked.state, acked.acknowledged_by, acked.acknowledged_at) == (
        "acknowledged", "wang", 110.0,
    )  # fmt: skip
    closed = q.close(1, "li", "false_alarm", "  pocket press ", 120.0)
    assert (closed.state, closed.closed_by, closed.outcome, closed.note) == (
        "closed", "li", "false_alarm", "pocket press",
    )  # fmt: skip
    assert closed.acknowledged_by == "wang" and not q.open_alarms()
    with pytest.raises(UnknownAlarmError):
        q.get(1)


@pytest.mark.parametrize(
    ("steps", "error"),
    [
        (["ack", "ack"], AlarmStateError),  # acknowledged twice
        (["close"], AlarmStateError),  # closed before it was acknowledged
        (["ack", "close-no-note"], AlarmError),
        (["ack", "close-bad-outcome"], AlarmError),
        (["ack", "close", "close"], UnknownAlarmError),  # closed: no longer open
    ],
)
def test_wrong_steps_are_refused_and_change_nothing(steps: list[str], error: type) -> None:
    q = queue()
    q.raise_alarm("low_battery", "T001", GRID, 0.0, None)
    *ok, last = steps
    act = {
        "ack": lambda: q.acknowledge(1, "a", 1.0),
        "close": lambda: q.close(1, "a", "valid", "done", 2.0),
        "close-no-note": lambda: q.close(1, "a", "valid", "   ", 2.0),
        "close-bad-outcome": lambda: q.close(1, "a", "maybe", "x", 2.0),
    }
    for step in ok:
        act[step]()
    before = q.open_alarms()
    with pytest.raises(error):
        act[last]()
    assert q.open_alarms() == before


def test_one_open_alarm_per_device_and_kind_updated_and_cleared() -> None:
    q = queue()
    first = q.raise_alarm("sos", "T001", GRID, 1.0, None)
    later = Position(30.2, 104.2, 5.0)
    again = q.raise_alarm("sos", "T001", GRID, 5.0, later)
    assert again.id == first.id and again.position == later and again.raised_at == 1.0
    other = q.raise_alarm("low_battery", "T001", GRID, 6.0, None)
    assert other.id == 2
    cleared = q.clear("sos", "T001", 7.0)
    assert cleared is not None and not cleared.active and cleared.state == "unattended"
    assert q.clear("sos", "T001", 8.0) is None  # already inactive: no change
    assert q.clear("left_grid", "T001", 8.0) is None  # never raised
    assert [a.id for a in q.open_alarms()] == [2, 1]  # newest first
    q.acknowledge(1, "a", 9.0)
    q.close(1, "a", "valid", "seen", 10.0)
    assert q.raise_alarm("sos", "T001", GRID, 11.0, None).id == 3  # a new episode


@pytest.mark.parametrize(
    ("now", "escalated_to", "escalations"),
    [
        (159.9, None, 0),
        (160.0, AREA, 1),
        (219.9, AREA, 1),
        (220.0, CENTRE, 2),
        (10_000.0, CENTRE, 2),  # the top: no further
    ],
)
def test_an_unattended_sos_escalates_tier_by_tier(
    now: float, escalated_to: str | None, escalations: int
) -> None:
    q = queue(60.0)
    q.raise_alarm("sos", "T001", GRID, 100.0, None)
    changed = q.tick(now)
    alarm = q.get(1)
    assert (alarm.escalated_to, alarm.escalations) == (escalated_to, escalations)
    assert (changed == [alarm]) == (escalations > 0)
    assert q.tick(now) == []  # nothing more at the same time


def test_escalation_stops_when_acknowledged_and_skips_other_kinds() -> None:
    q = queue(60.0)
    q.raise_alarm("sos", "T001", GRID, 0.0, None)
    q.raise_alarm("no_movement", "T002", GRID, 0.0, None)
    assert [a.escalated_to for a in q.tick(60.0)] == [AREA]
    q.acknowledge(1, "a", 61.0)
    assert q.tick(1000.0) == []
    assert q.get(2).escalations == 0
    assert queue(None).tick(1e9) == []


def test_a_queue_restored_from_storage_goes_on() -> None:
    stored = Alarm(7, "sos", "T001", GRID, "unattended", 100.0, escalated_to=AREA, escalations=1)
    closed = Alarm(9, "sos", "T002", GRID, "closed", 1.0)
    q = AlarmQueue(ORG.parent, AlarmPolicy(60.0), open_alarms=[stored, closed], last_id=9)
    assert [a.id for a in q.open_alarms()] == [7]
    assert q.tick(220.0)[0].escalated_to == CENTRE
    assert q.raise_alarm("left_grid", "T003", GRID, 300.0, None).id == 10
    assert Alarm.from_dict(q.get(7).as_dict()) == q.get(7)
