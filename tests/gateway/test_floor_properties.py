"""Floor control under random operation sequences: invariants and what terminals end up believing.

Every event is applied to a model of the terminals (what each device was last told, what the
talkgroup listeners were last told); after each operation that model must agree with the floor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.floor import (
    MAX_BURST_ID,
    Denied,
    Floor,
    FloorConfig,
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

DEVICES = ("A", "B", "C", "D", "E")
# Steps that land on and around the timer defaults, so ties and boundaries get exercised.
STEPS = st.sampled_from([0.0, 0.0, 0.001, 0.5, 1.0, 1.999, 2.0, 3.0, 4.0, 5.0, 31.0])

configs = st.builds(
    FloorConfig,
    max_burst_s=st.sampled_from([5.0, 30.0]),
    preempt_grace_s=st.sampled_from([0.0, 3.0]),
    queue_enabled=st.booleans(),
    queue_depth=st.integers(1, 3),
    queue_timeout_s=st.sampled_from([2.0, 30.0]),
)

operations = st.one_of(
    st.tuples(st.just("request"), st.sampled_from(DEVICES), st.sampled_from(list(Priority))),
    st.tuples(st.just("release"), st.sampled_from(DEVICES)),
    st.tuples(st.just("media"), st.sampled_from(DEVICES), st.booleans()),
    st.tuples(st.just("media_holder")),
    st.tuples(st.just("media_released")),
    st.tuples(st.just("tick")),
    st.tuples(st.just("tick_deadline")),
    st.tuples(st.just("remove"), st.sampled_from(DEVICES)),
    st.tuples(st.just("revoke")),
)


@dataclass
class Terminals:
    """What each device and the talkgroup listeners were last told."""

    told: dict[str, tuple[str, int]] = field(default_factory=dict)  # device -> (kind, number)
    broadcast: Taken | Idle = field(default_factory=Idle)

    def apply(self, events: list[FloorEvent]) -> None:
        for event in events:
            if isinstance(event, Granted):
                self.told[event.device] = ("holding", event.burst)
            elif isinstance(event, Queued):
                self.told[event.device] = ("queued", event.position)
            elif isinstance(event, Revoked):
                self.told[event.device] = ("revoked", event.burst)
            elif isinstance(event, Denied | Released):
                self.told.pop(event.device, None)
            elif isinstance(event, Taken | Idle):
                self.broadcast = event


def check_event_order(events: list[FloorEvent], floor_burst_before: int) -> None:
    """Taken always directly follows the Granted of the same burst; new grants are announced."""
    for index, event in enumerate(events):
        if isinstance(event, Taken):
            granted = events[index - 1] if index else None
            assert isinstance(granted, Granted), events
            assert (granted.device, granted.burst) == (event.by, event.burst)
    current = floor_burst_before
    for index, event in enumerate(events):
        if isinstance(event, Granted) and event.burst != current:
            follower = events[index + 1] if index + 1 < len(events) else None
            assert isinstance(follower, Taken), events
            assert current == 0 or event.burst == current % MAX_BURST_ID + 1
            current = event.burst


def check_floor(floor: Floor, config: FloorConfig, terminals: Terminals) -> None:
    queue = floor.queue()
    devices = [device for device, _ in queue]
    assert len(set(devices)) == len(devices)
    assert len(queue) <= (config.queue_depth if config.queue_enabled else 1)
    assert [p for _, p in queue] == sorted((p for _, p in queue), reverse=True)
    if floor.state is FloorState.IDLE:
        assert (floor.holder, floor.burst, floor.priority, queue) == (None, 0, None, [])
        assert terminals.broadcast == Idle()
    else:
        assert floor.holder is not None and floor.priority is not None
        assert 1 <= floor.burst <= MAX_BURST_ID
        assert floor.holder not in devices
        assert isinstance(terminals.broadcast, Taken)
        assert (terminals.broadcast.by, terminals.broadcast.burst) == (floor.holder, floor.burst)
        assert terminals.broadcast.priority == floor.priority
        if floor.state is FloorState.TAKEN:
            assert all(p <= floor.priority for _, p in queue)
            assert terminals.told.get(floor.holder) == ("holding", floor.burst)
        else:
            assert terminals.told.get(floor.holder) == ("revoked", floor.burst)
    for position, device in enumerate(devices, 1):
        assert terminals.told.get(device) == ("queued", position)
    for device in set(DEVICES) - set(devices) - {floor.holder}:
        assert terminals.told.get(device, ("none", 0))[0] in {"none", "revoked"}


@settings(max_examples=300, deadline=None)
@given(configs, st.lists(st.tuples(STEPS, operations), max_size=40))
def test_random_operations_keep_invariants(
    config: FloorConfig, script: list[tuple[float, tuple[object, ...]]]
) -> None:
    floor = Floor("grid-07", config, first_burst=MAX_BURST_ID - 1)  # wraps within a run
    terminals = Terminals()
    now = 0.0
    last_call = 0
    # The burst its holder released last and until when its frames may still come (a release
    # whose timers ended the burst first leaves none, which the model cannot tell).
    released: tuple[str, int, float] | None = None
    tail_open = False
    for index, (step, operation) in enumerate(script):
        now += step
        kind = operation[0]
        burst_before = floor.burst
        request_id = f"r{index}"
        events: list[FloorEvent]
        if kind in ("media", "media_holder", "media_released"):
            if kind == "media_released":
                device, burst = (released[0], released[1]) if released else ("A", 1)
            else:
                device = str(operation[1]) if kind == "media" else floor.holder or "A"
                burst = floor.burst if kind == "media_holder" or operation[2] else floor.burst + 1
            from_holder = device == floor.holder and burst == floor.burst
            accepted = floor.media(device, burst, now)
            if from_holder:
                assert accepted
                tail_open = False  # the holder talks: the tail is over
            elif accepted:  # only the released burst's tail, in time
                assert tail_open and released is not None, released
                assert released[:2] == (device, burst) and now < released[2], (released, now)
            continue
        if kind == "request":
            device, priority = str(operation[1]), operation[2]
            assert isinstance(priority, Priority)
            events = floor.request(device, priority, now, request_id)
            replies = [e for e in events if getattr(e, "request_id", None) == request_id]
            assert len(replies) == 1 and isinstance(replies[0], Granted | Queued | Denied)
            assert getattr(replies[0], "device", None) == device
        elif kind == "release":
            if floor.holder == operation[1] and floor.state is FloorState.TAKEN:
                released = (str(operation[1]), floor.burst, now + config.release_tail_s)
                tail_open = True
            events = floor.release(str(operation[1]), now, request_id)
            assert [e for e in events if isinstance(e, Released)] == [
                Released(str(operation[1]), request_id)
            ]
            assert not any(
                isinstance(e, Granted | Queued) and e.device == operation[1] for e in events
            )
        elif kind == "remove":
            terminals.told.pop(str(operation[1]), None)  # it went offline
            if released is not None and released[0] == operation[1]:
                tail_open = False  # stunned or gone: its tail is cut
            events = floor.remove(str(operation[1]), now)
            # Only the revoke of an overdue timer fired on the way may still address it.
            for event in events:
                if getattr(event, "device", None) == operation[1]:
                    assert isinstance(event, Revoked), events
                    assert event.reason in {"no_media", "max_duration"}
        elif kind == "revoke":
            events = floor.revoke(now)
        else:
            deadline = floor.next_deadline()
            if kind == "tick_deadline" and deadline is not None:
                now = max(now, deadline)
            events = floor.tick(now)
            if kind == "tick_deadline" and deadline is not None and deadline == now:
                assert events or floor.next_deadline() != deadline
        check_event_order(events, burst_before)
        for event in events:
            if isinstance(event, Taken):
                assert event.call in {last_call, last_call + 1}
                last_call = event.call
        terminals.apply(events)
        check_floor(floor, config, terminals)
        deadline = floor.next_deadline()
        assert (deadline is None) == (floor.state is FloorState.IDLE and not floor.queue())
        assert deadline is None or deadline > now  # nothing overdue after an operation
