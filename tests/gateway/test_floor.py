"""Floor control state machine (docs/protocol.md §6): every transition, table-driven, fake clock."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway.floor import (
    DEFAULT_CONFIG,
    Denied,
    Floor,
    FloorArgumentError,
    FloorConfig,
    FloorConfigError,
    FloorError,
    FloorEvent,
    FloorState,
    Granted,
    Idle,
    Priority,
    Queued,
    Released,
    Revoked,
    Taken,
)

N, DSP, EMG = Priority.NORMAL, Priority.DISPATCHER, Priority.EMERGENCY
IDLE, TAKEN, PENDING = FloorState.IDLE, FloorState.TAKEN, FloorState.PENDING_REVOKE
MAX_MS = 30_000
NO_QUEUE = FloorConfig(queue_enabled=False)
DEPTH_2 = FloorConfig(queue_depth=2)
NO_GRACE = FloorConfig(preempt_grace_s=0.0)


@dataclass(frozen=True)
class Step:
    op: str
    args: tuple[Any, ...]


def req(device: str, priority: Priority, now: float, request_id: str | None = None) -> Step:
    return Step("request", (device, priority, now, request_id))


def rel(device: str, now: float, request_id: str | None = None) -> Step:
    return Step("release", (device, now, request_id))


def media(device: str, burst: int, now: float) -> Step:
    return Step("media", (device, burst, now))


def tick(now: float) -> Step:
    return Step("tick", (now,))


def revoke(now: float, reason: str = "administrative") -> Step:
    return Step("revoke", (now, reason))


def remove(device: str, now: float) -> Step:
    return Step("remove", (device, now))


def apply(floor: Floor, step: Step) -> list[FloorEvent] | bool:
    result: list[FloorEvent] | bool = getattr(floor, step.op)(*step.args)
    return result


@dataclass(frozen=True)
class After:
    state: FloorState
    holder: str | None = None
    burst: int = 0
    queue: tuple[str, ...] = ()


@dataclass(frozen=True)
class Case:
    name: str
    setup: tuple[Step, ...]
    action: Step
    expected: list[FloorEvent] | bool
    after: After
    config: FloorConfig = field(default=DEFAULT_CONFIG)


# A holds the floor (burst 1, call 1) since t=0.
HELD = (req("A", N, 0.0, "a1"),)
# A holds; B and C wait in that order.
HELD_BC = (*HELD, req("B", N, 0.5, "b1"), req("C", N, 0.6, "c1"))
# A (normal) was pre-empted at t=1 by B (dispatcher): grace until 4, A's end of media at 5.
PENDING_SETUP = (*HELD, media("A", 1, 1.0), req("B", DSP, 1.0, "b1"))

# One row per transition; kept compact on purpose so the table reads as a table.
# fmt: off
CASES = [
    # ---- idle ---------------------------------------------------------------------------
    Case("idle+request grants and broadcasts", (), req("A", N, 0.0, "a1"),
         [Granted("A", 1, MAX_MS, "a1"), Taken("A", 1, N, 1)], After(TAKEN, "A", 1)),
    Case("idle+emergency request carries its priority", (), req("A", EMG, 0.0),
         [Granted("A", 1, MAX_MS, None), Taken("A", 1, EMG, 1)], After(TAKEN, "A", 1)),
    Case("idle+release by anyone is answered", (), rel("A", 0.0, "x"),
         [Released("A", "x")], After(IDLE)),
    Case("idle+tick does nothing", (), tick(100.0), [], After(IDLE)),
    Case("idle+revoke does nothing", (), revoke(1.0), [], After(IDLE)),
    Case("idle+remove does nothing", (), remove("A", 1.0), [], After(IDLE)),
    Case("idle+media refused", (), media("A", 0, 1.0), False, After(IDLE)),
    # ---- taken: requests ----------------------------------------------------------------
    Case("holder retry gets the same burst and the time left", HELD, req("A", N, 1.5, "a2"),
         [Granted("A", 1, 28_500, "a2")], After(TAKEN, "A", 1)),
    Case("holder retry with SOS raises the broadcast priority", HELD, req("A", EMG, 1.0, "a2"),
         [Granted("A", 1, 29_000, "a2"), Taken("A", 1, EMG, 1)], After(TAKEN, "A", 1)),
    Case("equal priority is queued", HELD, req("B", N, 1.0, "b1"),
         [Queued("B", 1, "b1")], After(TAKEN, "A", 1, ("B",))),
    Case("lower priority is queued", (req("A", DSP, 0.0),), req("B", N, 1.0, "b1"),
         [Queued("B", 1, "b1")], After(TAKEN, "A", 1, ("B",))),
    Case("queue off: busy", HELD, req("B", N, 1.0, "b1"),
         [Denied("B", "busy", "b1")], After(TAKEN, "A", 1), NO_QUEUE),
    Case("queue full: queue_full", (*HELD, req("B", N, 0.1), req("C", N, 0.2)),
         req("D", N, 1.0, "d1"), [Denied("D", "queue_full", "d1")],
         After(TAKEN, "A", 1, ("B", "C")), DEPTH_2),
    Case("full queue: an outranking request displaces the lowest entry",
         (req("A", EMG, 0.0), req("B", N, 0.1, "b1"), req("C", N, 0.2, "c1")),
         req("D", DSP, 1.0, "d1"),
         [Queued("D", 1, "d1"), Denied("C", "queue_full", "c1"), Queued("B", 2, None)],
         After(TAKEN, "A", 1, ("D", "B")), DEPTH_2),
    Case("queue is ordered by priority then arrival", (req("A", EMG, 0.0), *HELD_BC[1:]),
         req("D", DSP, 1.0, "d1"),
         [Queued("D", 1, "d1"), Queued("B", 2, None), Queued("C", 3, None)],
         After(TAKEN, "A", 1, ("D", "B", "C"))),
    Case("queued retry: same position, no duplicate", HELD_BC, req("B", N, 1.0, "b2"),
         [Queued("B", 1, "b2")], After(TAKEN, "A", 1, ("B", "C"))),
    Case("queued retry with a higher priority moves up",
         (req("A", EMG, 0.0), *HELD_BC[1:]), req("C", DSP, 1.0, "c2"),
         [Queued("C", 1, "c2"), Queued("B", 2, None)], After(TAKEN, "A", 1, ("C", "B"))),
    Case("queued retry outranking the holder pre-empts", HELD_BC, req("C", EMG, 1.0, "c2"),
         [Revoked("A", 1, "preempted", 3000), Queued("C", 1, "c2"), Queued("B", 2, None)],
         After(PENDING, "A", 1, ("C", "B"))),
    # ---- taken: pre-emption -------------------------------------------------------------
    Case("higher priority pre-empts with grace", HELD, req("B", DSP, 1.0, "b1"),
         [Revoked("A", 1, "preempted", 3000), Queued("B", 1, "b1")],
         After(PENDING, "A", 1, ("B",))),
    Case("pre-empter goes ahead of the queue", HELD_BC, req("D", EMG, 1.0, "d1"),
         [Revoked("A", 1, "preempted", 3000), Queued("D", 1, "d1"),
          Queued("B", 2, None), Queued("C", 3, None)],
         After(PENDING, "A", 1, ("D", "B", "C"))),
    Case("pre-emption into a full queue displaces the lowest", HELD_BC, req("D", DSP, 1.0, "d1"),
         [Revoked("A", 1, "preempted", 3000), Queued("D", 1, "d1"),
          Denied("C", "queue_full", "c1"), Queued("B", 2, None)],
         After(PENDING, "A", 1, ("D", "B")), DEPTH_2),
    Case("pre-emption works with the queue off", HELD, req("B", EMG, 1.0, "b1"),
         [Revoked("A", 1, "preempted", 3000), Queued("B", 1, "b1")],
         After(PENDING, "A", 1, ("B",)), NO_QUEUE),
    Case("zero grace hands over at once", HELD, req("B", DSP, 1.0, "b1"),
         [Revoked("A", 1, "preempted", 0), Granted("B", 2, MAX_MS, "b1"), Taken("B", 2, DSP, 1)],
         After(TAKEN, "B", 2), NO_GRACE),
    # ---- taken: release, timers, revoke, remove -----------------------------------------
    Case("holder release, empty queue: idle", HELD, rel("A", 2.0, "a2"),
         [Released("A", "a2"), Idle()], After(IDLE)),
    Case("holder release grants the next, others move up", HELD_BC, rel("A", 2.0, "a2"),
         [Released("A", "a2"), Granted("B", 2, MAX_MS, "b1"), Taken("B", 2, N, 1),
          Queued("C", 1, None)], After(TAKEN, "B", 2, ("C",))),
    Case("queued device releases: dropped, others move up", HELD_BC, rel("B", 1.0, "b2"),
         [Released("B", "b2"), Queued("C", 1, None)], After(TAKEN, "A", 1, ("C",))),
    Case("release by the last in the queue moves nobody", HELD_BC, rel("C", 1.0),
         [Released("C", None)], After(TAKEN, "A", 1, ("B",))),
    Case("release by a stranger is answered", HELD, rel("Z", 1.0, "z1"),
         [Released("Z", "z1")], After(TAKEN, "A", 1)),
    Case("end of media not yet due", HELD, tick(3.999), [], After(TAKEN, "A", 1)),
    Case("end of media: no frame for 4 s since the grant", HELD, tick(4.0),
         [Revoked("A", 1, "no_media", 0), Idle()], After(IDLE)),
    Case("a frame postpones end of media", (*HELD, media("A", 1, 3.0)), tick(6.9), [],
         After(TAKEN, "A", 1)),
    Case("end of media counts from the last frame", (*HELD, media("A", 1, 3.0)), tick(7.0),
         [Revoked("A", 1, "no_media", 0), Idle()], After(IDLE)),
    Case("a frame with a stale burst does not postpone end of media",
         (*HELD, media("A", 2, 3.0)), tick(4.0),
         [Revoked("A", 1, "no_media", 0), Idle()], After(IDLE)),
    Case("max burst: revoked after 30 s, next granted",
         (*HELD_BC, *(media("A", 1, float(t)) for t in range(2, 30, 2))), tick(30.0),
         [Revoked("A", 1, "max_duration", 0), Granted("B", 2, MAX_MS, "b1"),
          Taken("B", 2, N, 1), Queued("C", 1, None)], After(TAKEN, "B", 2, ("C",))),
    Case("administrative revoke: idle", HELD, revoke(1.0),
         [Revoked("A", 1, "administrative", 0), Idle()], After(IDLE)),
    Case("administrative revoke grants the next", HELD_BC, revoke(1.0),
         [Revoked("A", 1, "administrative", 0), Granted("B", 2, MAX_MS, "b1"),
          Taken("B", 2, N, 1), Queued("C", 1, None)], After(TAKEN, "B", 2, ("C",))),
    Case("holder removed: next granted, no reply to the gone device", HELD_BC, remove("A", 1.0),
         [Granted("B", 2, MAX_MS, "b1"), Taken("B", 2, N, 1), Queued("C", 1, None)],
         After(TAKEN, "B", 2, ("C",))),
    Case("holder removed, empty queue: idle", HELD, remove("A", 1.0), [Idle()], After(IDLE)),
    Case("queued device removed: others move up", HELD_BC, remove("B", 1.0),
         [Queued("C", 1, None)], After(TAKEN, "A", 1, ("C",))),
    Case("stranger removed: nothing", HELD, remove("Z", 1.0), [], After(TAKEN, "A", 1)),
    Case("queue timeout", (*HELD, req("B", N, 1.0, "b1"), req("C", N, 2.0, "c1"),
                           *(media("A", 1, float(t)) for t in range(3, 31, 3))), tick(31.0),
         [Denied("B", "queue_timeout", "b1"), Queued("C", 1, None)],
         After(TAKEN, "A", 1, ("C",)), FloorConfig(max_burst_s=60.0)),
    # ---- taken: media -------------------------------------------------------------------
    Case("holder's frame with the current burst accepted", HELD, media("A", 1, 1.0), True,
         After(TAKEN, "A", 1)),
    Case("holder's frame with another burst refused", HELD, media("A", 2, 1.0), False,
         After(TAKEN, "A", 1)),
    Case("a queued device's frame refused", HELD_BC, media("B", 1, 1.0), False,
         After(TAKEN, "A", 1, ("B", "C"))),
    # ---- pending-revoke -----------------------------------------------------------------
    Case("pre-empted holder's frames still accepted during grace", PENDING_SETUP,
         media("A", 1, 3.9), True, After(PENDING, "A", 1, ("B",))),
    Case("grace not yet over", PENDING_SETUP, tick(3.999), [], After(PENDING, "A", 1, ("B",))),
    Case("grace expiry grants the pre-empter, no second revoke", PENDING_SETUP, tick(4.0),
         [Granted("B", 2, MAX_MS, "b1"), Taken("B", 2, DSP, 1)], After(TAKEN, "B", 2)),
    Case("pre-empted holder releases early", PENDING_SETUP, rel("A", 2.0, "a2"),
         [Released("A", "a2"), Granted("B", 2, MAX_MS, "b1"), Taken("B", 2, DSP, 1)],
         After(TAKEN, "B", 2)),
    Case("frames stop during grace: handed over at end of media",
         (*HELD, media("A", 1, 0.5), req("B", DSP, 4.0, "b1")), tick(4.5),
         [Granted("B", 2, MAX_MS, "b1"), Taken("B", 2, DSP, 1)], After(TAKEN, "B", 2)),
    Case("max burst during grace hands over early",
         (*HELD, *(media("A", 1, float(t)) for t in range(2, 30, 2)), req("B", DSP, 28.5, "b1")),
         tick(30.0), [Granted("B", 2, MAX_MS, "b1"), Taken("B", 2, DSP, 1)],
         After(TAKEN, "B", 2)),
    Case("yet-higher request during grace goes to the head", PENDING_SETUP,
         req("C", EMG, 2.0, "c1"), [Queued("C", 1, "c1"), Queued("B", 2, None)],
         After(PENDING, "A", 1, ("C", "B"))),
    Case("lower request during grace queues behind", PENDING_SETUP, req("C", N, 2.0, "c1"),
         [Queued("C", 2, "c1")], After(PENDING, "A", 1, ("B", "C"))),
    Case("holder retry during grace: answered, and the revoke repeated", PENDING_SETUP,
         req("A", N, 2.5, "a2"), [Granted("A", 1, 1500, "a2"), Revoked("A", 1, "preempted", 1500)],
         After(PENDING, "A", 1, ("B",))),
    Case("pre-empter retry during grace", PENDING_SETUP, req("B", DSP, 2.0, "b2"),
         [Queued("B", 1, "b2")], After(PENDING, "A", 1, ("B",))),
    Case("pre-empter gives up: the revoke stands", PENDING_SETUP, rel("B", 2.0, "b2"),
         [Released("B", "b2")], After(PENDING, "A", 1)),
    Case("pre-empter gave up: grace expiry goes idle", (*PENDING_SETUP, rel("B", 2.0)),
         tick(4.0), [Idle()], After(IDLE)),
    Case("administrative revoke during grace hands over at once", PENDING_SETUP, revoke(2.0),
         [Revoked("A", 1, "administrative", 0), Granted("B", 2, MAX_MS, "b1"),
          Taken("B", 2, DSP, 1)], After(TAKEN, "B", 2)),
    Case("pre-empted holder removed", PENDING_SETUP, remove("A", 2.0),
         [Granted("B", 2, MAX_MS, "b1"), Taken("B", 2, DSP, 1)], After(TAKEN, "B", 2)),
    Case("queue off, grace: an outranking request displaces the pre-empter", PENDING_SETUP,
         req("C", EMG, 2.0, "c1"), [Queued("C", 1, "c1"), Denied("B", "busy", "b1")],
         After(PENDING, "A", 1, ("C",)), NO_QUEUE),
    Case("queue off, grace: an equal request is busy", PENDING_SETUP, req("C", DSP, 2.0, "c1"),
         [Denied("C", "busy", "c1")], After(PENDING, "A", 1, ("B",)), NO_QUEUE),
    # ---- timers seen by requests and by late ticks --------------------------------------
    Case("a request first fires overdue timers", HELD, req("B", N, 7.0, "b1"),
         [Revoked("A", 1, "no_media", 0), Idle(), Granted("B", 2, MAX_MS, "b1"),
          Taken("B", 2, N, 2)], After(TAKEN, "B", 2)),
    Case("late tick handles timers in the order they fell due",
         (*HELD, req("B", N, 1.0, "b1")), tick(10.0),
         [Denied("B", "queue_timeout", "b1"), Revoked("A", 1, "no_media", 0), Idle()],
         After(IDLE), FloorConfig(queue_timeout_s=2.0)),
    Case("late tick: the burst ended when due, the next one's timers start now",
         (*HELD, req("B", N, 1.0, "b1")), tick(10.0),
         [Revoked("A", 1, "no_media", 0), Granted("B", 2, MAX_MS, "b1"), Taken("B", 2, N, 2)],
         After(TAKEN, "B", 2)),
    Case("overdue timer, then a grant within hang time of the due time: same call",
         HELD, req("B", N, 5.0, "b1"),
         [Revoked("A", 1, "no_media", 0), Idle(), Granted("B", 2, MAX_MS, "b1"),
          Taken("B", 2, N, 1)], After(TAKEN, "B", 2)),
    Case("queued device releasing as the floor frees up is not granted on the way",
         (*HELD, req("B", N, 1.0, "b1")), rel("B", 4.0, "b2"),
         [Revoked("A", 1, "no_media", 0), Idle(), Released("B", "b2")], After(IDLE)),
    Case("queued device removed as the floor frees up is not granted on the way",
         HELD_BC, remove("B", 4.0),
         [Revoked("A", 1, "no_media", 0), Granted("C", 2, MAX_MS, "c1"), Taken("C", 2, N, 1)],
         After(TAKEN, "C", 2)),
    Case("floor timer and queue timeout tie: the request is served",
         (*HELD, req("B", N, 0.0, "b1")), tick(4.0),
         [Revoked("A", 1, "no_media", 0), Granted("B", 2, MAX_MS, "b1"), Taken("B", 2, N, 1)],
         After(TAKEN, "B", 2), FloorConfig(queue_timeout_s=4.0)),
]
# fmt: on


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_transition(case: Case) -> None:
    floor = Floor("grid-07", case.config)
    for step in case.setup:
        apply(floor, step)
    assert apply(floor, case.action) == case.expected
    after = After(floor.state, floor.holder, floor.burst, tuple(d for d, _ in floor.queue()))
    assert after == case.after


# ---- call numbers, burst ids --------------------------------------------------------------


@pytest.mark.parametrize(("gap", "call"), [(0.0, 1), (1.0, 1), (2.0, 1), (2.001, 2), (60.0, 2)])
def test_hang_time_groups_bursts_into_calls(gap: float, call: int) -> None:
    floor = Floor("grid-07")
    floor.request("A", N, 0.0)
    floor.release("A", 1.0)
    events = floor.request("B", N, 1.0 + gap)
    assert events[1] == Taken("B", 2, N, call)
    assert floor.call == call


def test_queue_hand_over_keeps_the_call() -> None:
    floor = Floor("grid-07")
    floor.request("A", N, 0.0)
    floor.request("B", N, 1.0)
    for t in range(2, 20, 2):
        assert floor.media("A", 1, float(t))
    assert floor.release("A", 20.0)[2] == Taken("B", 2, N, 1)


def test_burst_ids_wrap_and_skip_zero() -> None:
    floor = Floor("grid-07", first_burst=65534)
    bursts = []
    for n in range(4):
        granted = floor.request("A", N, 10.0 * n)[0]
        assert isinstance(granted, Granted)
        bursts.append(granted.burst)
        floor.release("A", 10.0 * n + 1)
    assert bursts == [65534, 65535, 1, 2]


def test_bursts_are_per_floor() -> None:
    one, two = Floor("grid-01"), Floor("grid-02", first_burst=500)
    one.request("A", N, 0.0)
    two.request("B", N, 0.0)
    assert (one.burst, two.burst) == (1, 500)


# ---- deadlines ------------------------------------------------------------------------------


def test_next_deadline_follows_the_timers() -> None:
    floor = Floor("grid-07")
    assert floor.next_deadline() is None
    floor.request("A", N, 0.0)
    assert floor.next_deadline() == 4.0  # end of media
    floor.media("A", 1, 3.0)
    assert floor.next_deadline() == 7.0
    floor.request("B", DSP, 3.5)
    assert floor.next_deadline() == 6.5  # grace
    floor.tick(6.5)
    assert floor.holder == "B"
    floor.request("C", N, 7.0)
    for t in range(8, 37, 2):
        floor.media("B", 2, float(t))
    assert floor.next_deadline() == 36.5  # B's max burst beats C's queue timeout (37)
    floor.release("B", 36.0)
    floor.release("C", 36.0)
    assert floor.next_deadline() is None


def test_stale_deadline_tick_is_harmless() -> None:
    floor = Floor("grid-07")
    floor.request("A", N, 0.0)
    stale = floor.next_deadline()
    assert stale is not None
    floor.media("A", 1, 2.0)
    assert floor.tick(stale) == []
    assert floor.state is TAKEN


# ---- vocabulary and bad input ---------------------------------------------------------------


def test_protocol_names() -> None:
    assert [p.label for p in Priority] == ["normal", "dispatcher", "emergency"]
    assert EMG > DSP > N
    assert [s.value for s in FloorState] == ["idle", "taken", "pending_revoke"]
    names = {
        Granted: "floor_granted",
        Queued: "floor_queued",
        Denied: "floor_deny",
        Revoked: "floor_revoke",
        Released: "floor_released",
        Taken: "floor_taken",
        Idle: "floor_idle",
    }
    for event_type, message in names.items():
        assert issubclass(event_type, FloorEvent)
        assert event_type.message == message


def test_defaults_match_protocol() -> None:
    config = FloorConfig()
    assert (config.max_burst_s, config.end_of_media_s, config.preempt_grace_s) == (30, 4, 3)
    assert (config.hang_time_s, config.queue_depth, config.queue_timeout_s) == (2, 8, 30)
    assert config.queue_enabled and config.release_tail_s == 1.0


def test_frames_of_a_released_burst_overtaken_by_the_release_are_still_relayed() -> None:
    # The gateway reads control and voice on separate connections: the release can come first.
    floor = Floor("grid-07")
    floor.request("A", N, 10.0)
    burst = floor.burst
    assert floor.media("A", burst, 10.02)
    assert floor.release("A", 12.0) == [Released("A", None), Idle()]
    assert floor.media("A", burst, 12.01) and floor.media("A", burst, 12.99)
    assert not floor.media("A", burst, 13.0)  # release_tail_s later: over
    assert not floor.media("A", burst + 1, 12.5)  # not another burst
    assert not floor.media("B", burst, 12.5)  # nor another device


def test_the_next_holders_first_frame_ends_the_tail() -> None:
    floor = Floor("grid-07")
    floor.request("A", N, 10.0)
    first = floor.burst
    floor.request("B", N, 10.5)  # queued
    floor.release("A", 12.0)
    assert floor.holder == "B"
    second = floor.burst
    assert floor.media("A", first, 12.05)  # B has not talked yet
    assert floor.media("B", second, 12.1)
    assert not floor.media("A", first, 12.15)  # never two talkers relayed at once


@pytest.mark.parametrize(
    "ending", ["revoke", "remove", "no_media", "released_after_no_media", "preempted"]
)
def test_only_a_holders_release_leaves_a_tail(ending: str) -> None:
    floor = Floor("grid-07")
    floor.request("A", N, 10.0)
    burst = floor.burst
    floor.request("B", N, 10.1)
    now = 11.0
    if ending == "revoke":
        floor.revoke(now)
    elif ending == "remove":
        floor.remove("A", now)
    elif ending == "no_media":
        now = 14.0
        floor.tick(now)  # end of media: 4 s after the grant
    elif ending == "released_after_no_media":
        now = 14.5  # the timer fires first, within the release: the burst had already ended
        assert floor.release("A", now)[0] == Revoked("A", burst, "no_media", 0)
    else:  # pre-empted: its frames are relayed for the grace, not past it
        floor.request("C", EMG, 10.5)
        floor.release("A", now)
        assert floor.holder == "C"
    assert not floor.media("A", burst, now + 0.01)
    assert not floor.tailing("A", now + 0.01)


def test_a_device_stunned_or_gone_in_its_tail_is_cut() -> None:
    floor = Floor("grid-07")
    floor.request("A", N, 10.0)
    burst = floor.burst
    floor.release("A", 12.0)
    assert floor.tailing("A", 12.1) and floor.media("A", burst, 12.1)
    floor.remove("A", 12.2)
    assert not floor.tailing("A", 12.3) and not floor.media("A", burst, 12.3)


def test_a_tail_of_zero_cuts_at_the_release() -> None:
    floor = Floor("grid-07", FloorConfig(release_tail_s=0.0))
    floor.request("A", N, 10.0)
    burst = floor.burst
    floor.release("A", 12.0)
    assert not floor.media("A", burst, 12.0)


def test_queue_depth_limit() -> None:
    floor = Floor("grid-07", FloorConfig(queue_depth=8))
    floor.request("H", N, 0.0)
    replies = [floor.request(f"Q{n}", N, 0.1)[0] for n in range(9)]
    assert replies[:8] == [Queued(f"Q{n}", n + 1, None) for n in range(8)]
    assert replies[8] == Denied("Q8", "queue_full", None)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_burst_s": 0},
        {"end_of_media_s": -1},
        {"queue_timeout_s": float("inf")},
        {"preempt_grace_s": -0.1},
        {"hang_time_s": float("nan")},
        {"release_tail_s": -1},
        {"queue_depth": 0},
        {"queue_depth": 2.5},
        {"queue_depth": True},
    ],
)
def test_bad_config_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(FloorConfigError):
        FloorConfig(**kwargs)


@pytest.mark.parametrize("first_burst", [0, 65536, -1, True, 1.0])
def test_bad_first_burst_rejected(first_burst: Any) -> None:
    with pytest.raises(FloorArgumentError):
        Floor("grid-07", first_burst=first_burst)


@pytest.mark.parametrize("last_call", [-1, True, 1.0, "2"])
def test_bad_last_call_rejected(last_call: Any) -> None:
    with pytest.raises(FloorArgumentError):
        Floor("call:A:B", last_call=last_call)


def test_idle_since_and_resume_point_continue_the_numbering() -> None:
    floor = Floor("call:A:B")
    assert floor.idle_since() is None  # never used: nothing ended yet
    floor.request("A", N, 0.0)
    assert floor.idle_since() is None  # taken
    floor.request("B", N, 0.5)
    floor.release("A", 2.0)
    assert floor.holder == "B" and floor.idle_since() is None
    floor.release("B", 3.0)
    assert floor.idle_since() == 3.0
    assert floor.resume_point == (3, 1)  # bursts 1 and 2 were one call
    again = Floor("call:A:B", first_burst=3, last_call=1)
    assert apply(again, req("A", N, 100.0)) == [
        Granted("A", 3, MAX_MS, None),
        Taken("A", 3, N, 2),
    ]


@pytest.mark.parametrize(
    "step",
    [
        req("", N, 0.0),
        Step("request", ("A", 3, 0.0, None)),
        Step("request", ("A", "normal", 0.0, None)),
        Step("request", ("A", N, 0.0, 7)),
        rel("", 0.0),
        Step("release", ("A", 0.0, 7)),
        remove("", 0.0),
        revoke(0.0, "bored"),
    ],
)
def test_bad_arguments_rejected(step: Step) -> None:
    floor = Floor("grid-07")
    with pytest.raises(FloorError) as info:
        apply(floor, step)
    assert isinstance(info.value, ValueError)
    assert floor.state is IDLE


def test_plain_int_priority_accepted() -> None:
    floor = Floor("grid-07")
    assert apply(floor, Step("request", ("A", 2, 0.0, None))) == [
        Granted("A", 1, MAX_MS, None),
        Taken("A", 1, EMG, 1),
    ]


def test_logs_through_the_injected_logger(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.floor")
    floor = Floor("grid-07", logger=logger)
    with caplog.at_level(logging.DEBUG, logger="test.floor"):
        floor.request("A", N, 0.0)
        floor.revoke(1.0)
    assert [r.name for r in caplog.records] == ["test.floor", "test.floor"]
    assert "administrative" in caplog.records[-1].getMessage()
