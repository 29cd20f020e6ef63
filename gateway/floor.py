"""Floor control (docs/protocol.md §6): a sans-I/O state machine per talkgroup or private call.

Modelled on 3GPP MCPTT floor control (TS 24.380) with three states: idle, taken and
pending-revoke. Every method takes the current time (`now`, seconds on any monotonic clock) and
returns the events to publish; nothing here sleeps, reads a clock or does I/O. The gateway keeps
one :class:`Floor` per talkgroup / private call, calls :meth:`Floor.media` for every voice frame and
:meth:`Floor.tick` at :meth:`Floor.next_deadline`.

Each event maps 1:1 onto a protocol message (its ``message`` class attribute): :class:`Granted`,
:class:`Queued`, :class:`Denied`, :class:`Revoked` and :class:`Released` go to one device's
``ctrl/down``; :class:`Taken` and :class:`Idle` are the ``tg/{tg}/ctrl`` broadcast.
"""

from __future__ import annotations

import logging
import math

from gateway.floor_types import (
    DEFAULT_CONFIG,
    DENY_BUSY,
    DENY_QUEUE_FULL,
    DENY_QUEUE_TIMEOUT,
    FLOOR_DENY_REASONS,
    MAX_BURST_ID,
    REVOKE_ADMINISTRATIVE,
    REVOKE_MAX_DURATION,
    REVOKE_NO_MEDIA,
    REVOKE_PREEMPTED,
    REVOKE_REASONS,
    Denied,
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

__all__ = [
    "DEFAULT_CONFIG",
    "DENY_BUSY",
    "DENY_QUEUE_FULL",
    "DENY_QUEUE_TIMEOUT",
    "FLOOR_DENY_REASONS",
    "MAX_BURST_ID",
    "REVOKE_ADMINISTRATIVE",
    "REVOKE_MAX_DURATION",
    "REVOKE_NO_MEDIA",
    "REVOKE_PREEMPTED",
    "REVOKE_REASONS",
    "Denied",
    "Floor",
    "FloorArgumentError",
    "FloorConfig",
    "FloorConfigError",
    "FloorError",
    "FloorEvent",
    "FloorState",
    "Granted",
    "Idle",
    "Priority",
    "Queued",
    "Released",
    "Revoked",
    "Taken",
]

_log = logging.getLogger(__name__)


class _Waiting:
    """One queued request; mutable because a repeated request may raise its priority."""

    __slots__ = ("device", "expires", "priority", "request_id", "seq")

    def __init__(
        self, device: str, priority: Priority, seq: int, expires: float, request_id: str | None
    ) -> None:
        self.device = device
        self.priority = priority
        self.seq = seq
        self.expires = expires
        self.request_id = request_id

    def rank(self) -> tuple[int, int]:
        """Sort key: priority first (highest first), then arrival."""
        return (-self.priority, self.seq)


class Floor:
    """The floor of one talkgroup or private call. See the module docstring and §6."""

    __slots__ = (
        "_call",
        "_grace_until",
        "_granted_at",
        "_last_end",
        "_last_media",
        "_log",
        "_next_burst",
        "_queue",
        "_seq",
        "_tail_burst",
        "_tail_device",
        "_tail_until",
        "burst",
        "config",
        "holder",
        "key",
        "priority",
        "state",
    )

    def __init__(
        self,
        key: str,
        config: FloorConfig = DEFAULT_CONFIG,
        first_burst: int = 1,
        *,
        last_call: int = 0,
        logger: logging.Logger | None = None,
    ) -> None:
        if isinstance(first_burst, bool) or not isinstance(first_burst, int):
            raise FloorArgumentError(f"first_burst must be an int, got {first_burst!r}")
        if not 1 <= first_burst <= MAX_BURST_ID:
            raise FloorArgumentError(f"first_burst must be 1..{MAX_BURST_ID}, got {first_burst}")
        if isinstance(last_call, bool) or not isinstance(last_call, int) or last_call < 0:
            raise FloorArgumentError(f"last_call must be an int >= 0, got {last_call!r}")
        if not isinstance(config, FloorConfig):
            raise FloorArgumentError(f"config must be a FloorConfig, got {config!r}")
        self.key = key
        self.config = config
        self.state = FloorState.IDLE
        self.holder: str | None = None
        self.burst = 0
        self.priority: Priority | None = None
        self._log = logger if logger is not None else _log
        self._next_burst = first_burst
        self._call = last_call
        self._last_end: float | None = None  # when the previous burst ended (hang time)
        self._granted_at = 0.0
        self._last_media = 0.0
        self._grace_until = 0.0
        # The burst its holder released last: its frames may still be on their way (below).
        self._tail_device: str | None = None
        self._tail_burst = 0
        self._tail_until = 0.0
        self._queue: list[_Waiting] = []
        self._seq = 0

    def __repr__(self) -> str:
        return (
            f"Floor({self.key!r}, state={self.state.value}, holder={self.holder!r}, "
            f"burst={self.burst}, queue={[w.device for w in self._queue]!r})"
        )

    # -- queries --------------------------------------------------------------------------

    @property
    def call(self) -> int:
        """The current (or last) call number; 0 before the first grant."""
        return self._call

    @property
    def resume_point(self) -> tuple[int, int]:
        """(next burst id, last call number): a floor built with them continues the numbering."""
        return self._next_burst, self._call

    def idle_since(self) -> float | None:
        """When the last burst ended, if the floor is idle with nobody waiting; else None."""
        if self.state is not FloorState.IDLE or self._queue:
            return None
        return self._last_end

    def queue(self) -> list[tuple[str, Priority]]:
        """Waiting devices in grant order (position 1 first)."""
        return [(w.device, w.priority) for w in self._queue]

    def next_deadline(self) -> float | None:
        """The earliest time at which :meth:`tick` has work, or None when no timer runs.

        Frames move the end-of-media deadline later without telling the caller, so a tick at a
        deadline that has since moved is harmless: it returns nothing.
        """
        deadline = self._floor_deadline()
        for waiting in self._queue:
            if deadline is None or waiting.expires < deadline:
                deadline = waiting.expires
        return deadline

    # -- hot path -------------------------------------------------------------------------

    def media(self, device: str, burst: int, now: float) -> bool:
        """Accept a voice frame from `device` with `burst`? Records `now` as the last media time.

        Called for every frame, so deliberately just two comparisons and two stores. Timers are
        only enforced by :meth:`tick` (and at the start of the other methods).

        The gateway reads voice and control on separate connections, so a holder's
        `floor_release` can overtake its last frames (a backlog on the voice connection). Those
        frames of the released burst are still accepted for `release_tail_s` after the release,
        until the next holder's first frame: the end of what was said is not cut, and two
        talkers are never relayed at once.
        """
        if burst != self.burst or device != self.holder:
            return self.tail_talker(burst, now) == device
        self._last_media = now
        self._tail_until = 0.0  # the holder talks: an earlier burst's tail is over
        return True

    # -- requests -------------------------------------------------------------------------

    def request(
        self, device: str, priority: Priority, now: float, request_id: str | None = None
    ) -> list[FloorEvent]:
        """`floor_request` from `device`; the first event addressed to it is the reply."""
        _check_device(device)
        priority = _check_priority(priority)
        _check_request_id(request_id)
        before = self._positions()
        events: list[FloorEvent] = []
        self._fire_due(now, events)
        if self.state is FloorState.IDLE:
            self._grant(device, priority, now, request_id, events)
        elif device == self.holder:
            self._regrant(priority, now, request_id, events)
        else:
            self._enqueue(device, priority, now, request_id, events)
        self._announce_moves(before, events)
        return events

    def release(self, device: str, now: float, request_id: str | None = None) -> list[FloorEvent]:
        """`floor_release` from `device`: always answered `Released` (idempotent)."""
        _check_device(device)
        _check_request_id(request_id)
        before = self._positions()
        events: list[FloorEvent] = []
        self._drop(device)  # before the timers: a leaving device must not be granted on the way
        self._fire_due(now, events)
        events.append(Released(device, request_id))
        if device == self.holder:
            self._log.debug("floor %s: %s released burst %d", self.key, device, self.burst)
            if self.state is FloorState.TAKEN:  # a pre-empted holder's frames end with its grace
                self._tail_device, self._tail_burst = device, self.burst
                self._tail_until = now + self.config.release_tail_s
            self._hand_over(now, events)
        self._announce_moves(before, events)
        return events

    def tailing(self, device: str, now: float) -> bool:
        """Are frames of the burst `device` released still accepted (see :meth:`media`)?"""
        return device == self._tail_device and now < self._tail_until

    def tail_talker(self, burst: int, now: float) -> str | None:
        """Who released `burst`, while its release tail lasts (None otherwise)."""
        if burst == self._tail_burst and now < self._tail_until:
            return self._tail_device
        return None

    def remove(self, device: str, now: float) -> list[FloorEvent]:
        """`device` went offline or was disabled: end its burst (or its release tail) and drop
        its queued request."""
        _check_device(device)
        before = self._positions()
        events: list[FloorEvent] = []
        if device == self._tail_device:
            self._tail_until = 0.0
        self._drop(device)  # before the timers: a leaving device must not be granted on the way
        self._fire_due(now, events)
        if device == self.holder:
            self._log.debug("floor %s: holder %s removed", self.key, device)
            self._hand_over(now, events)
        self._announce_moves(before, events)
        return events

    def revoke(self, now: float, reason: str = REVOKE_ADMINISTRATIVE) -> list[FloorEvent]:
        """Take the floor away immediately (`grace_ms` 0), then grant the next or go idle."""
        if reason not in REVOKE_REASONS:
            raise FloorArgumentError(f"unknown revoke reason {reason!r}")
        before = self._positions()
        events: list[FloorEvent] = []
        self._fire_due(now, events)
        if self.holder is not None:
            events.append(Revoked(self.holder, self.burst, reason, 0))
            self._log.info(
                "floor %s: burst %d of %s revoked (%s)", self.key, self.burst, self.holder, reason
            )
            self._hand_over(now, events)
        self._announce_moves(before, events)
        return events

    def tick(self, now: float) -> list[FloorEvent]:
        """Fire every timer due at `now`, in the order they fell due."""
        deadline = self.next_deadline()
        if deadline is None or deadline > now:
            return []
        events: list[FloorEvent] = []
        before = self._positions()
        self._fire_due(now, events)
        self._announce_moves(before, events)
        return events

    # -- transitions ----------------------------------------------------------------------

    def _grant(
        self,
        device: str,
        priority: Priority,
        now: float,
        request_id: str | None,
        events: list[FloorEvent],
    ) -> None:
        if self._last_end is None or now - self._last_end > self.config.hang_time_s:
            self._call += 1
        self.state = FloorState.TAKEN
        self.holder = device
        self.priority = priority
        self.burst = self._next_burst
        self._next_burst = self.burst % MAX_BURST_ID + 1
        self._granted_at = now
        self._last_media = now
        events.append(Granted(device, self.burst, self.config.max_ms, request_id))
        events.append(Taken(device, self.burst, priority, self._call))
        self._log.debug(
            "floor %s: burst %d granted to %s (%s, call %d)",
            self.key,
            self.burst,
            device,
            priority.label,
            self._call,
        )

    def _regrant(
        self, priority: Priority, now: float, request_id: str | None, events: list[FloorEvent]
    ) -> None:
        """The holder asked again (a retry): same burst, `max_ms` is what is left of it."""
        assert self.holder is not None and self.priority is not None
        if self.state is FloorState.PENDING_REVOKE:
            # The revoke stands: answer the retry, then repeat the revoke so that the terminal
            # does not take the reply for a fresh floor (both carry the time left).
            deadline = self._floor_deadline()
            assert deadline is not None
            left_ms = _ms_left(deadline, now)
            events.append(Granted(self.holder, self.burst, left_ms, request_id))
            events.append(Revoked(self.holder, self.burst, REVOKE_PREEMPTED, left_ms))
            return
        self._last_media = max(self._last_media, now)  # it may not have started sending yet
        left_ms = _ms_left(self._granted_at + self.config.max_burst_s, now)
        events.append(Granted(self.holder, self.burst, left_ms, request_id))
        if priority > self.priority:  # e.g. SOS pressed while talking: listeners must know
            self.priority = priority
            events.append(Taken(self.holder, self.burst, priority, self._call))

    def _enqueue(
        self,
        device: str,
        priority: Priority,
        now: float,
        request_id: str | None,
        events: list[FloorEvent],
    ) -> None:
        assert self.priority is not None
        displaced: _Waiting | None = None
        waiting = self._find(device)
        if waiting is not None:  # a retry: no duplicate entry, but SOS may raise its priority
            if request_id is not None:
                waiting.request_id = request_id
            if priority > waiting.priority:
                waiting.priority = priority
                self._queue.sort(key=_Waiting.rank)
        else:
            waiting = _Waiting(
                device, priority, self._seq, now + self.config.queue_timeout_s, request_id
            )
            refusal = self._refusal(waiting)
            if refusal is not None:
                events.append(Denied(device, refusal, request_id))
                return
            if len(self._queue) >= self._depth():
                displaced = self._queue.pop()
            self._seq += 1
            self._queue.append(waiting)
            self._queue.sort(key=_Waiting.rank)
        if self.state is FloorState.TAKEN and self._queue[0].priority > self.priority:
            self._preempt(now, events)
        if self.holder != device:  # with zero grace the pre-empter was granted at once
            events.append(Queued(device, self._position(device), request_id))
        if displaced is not None:
            reason = DENY_QUEUE_FULL if self.config.queue_enabled else DENY_BUSY
            events.append(Denied(displaced.device, reason, displaced.request_id))

    def _depth(self) -> int:
        # Without a queue only a pre-empter may wait (for the holder's grace to run out).
        return self.config.queue_depth if self.config.queue_enabled else 1

    def _refusal(self, waiting: _Waiting) -> str | None:
        """Why a new request cannot wait, or None if it can (possibly displacing the lowest)."""
        assert self.priority is not None
        if not self.config.queue_enabled:
            if waiting.priority <= self.priority:
                return DENY_BUSY
            reason = DENY_BUSY
        else:
            reason = DENY_QUEUE_FULL
        if len(self._queue) >= self._depth() and waiting.priority <= self._queue[-1].priority:
            return reason
        return None

    def _preempt(self, now: float, events: list[FloorEvent]) -> None:
        assert self.holder is not None
        grace_ms = self.config.grace_ms
        events.append(Revoked(self.holder, self.burst, REVOKE_PREEMPTED, grace_ms))
        self._log.info(
            "floor %s: burst %d of %s pre-empted by %s",
            self.key,
            self.burst,
            self.holder,
            self._queue[0].device,
        )
        if grace_ms == 0:
            self._hand_over(now, events)
        else:
            self.state = FloorState.PENDING_REVOKE
            self._grace_until = now + self.config.preempt_grace_s

    def _hand_over(
        self, now: float, events: list[FloorEvent], ended_at: float | None = None
    ) -> None:
        """End the current burst (at `ended_at`, default now); grant the next, else go idle."""
        self._last_end = now if ended_at is None else ended_at
        if self._queue:
            head = self._queue.pop(0)
            self._grant(head.device, head.priority, now, head.request_id, events)
            return
        self.state = FloorState.IDLE
        self.holder = None
        self.priority = None
        self.burst = 0
        events.append(Idle())

    def _fire_due(self, now: float, events: list[FloorEvent]) -> None:
        """Process due timers one by one in time order (a late tick may find several due).

        On a tie the floor timer goes first, so a queued request due to expire at the very
        moment the floor frees up is served rather than denied.
        """
        while True:
            floor_due = self._floor_deadline()
            expiring: _Waiting | None = None
            for waiting in self._queue:
                if expiring is None or waiting.expires < expiring.expires:
                    expiring = waiting
            if (
                floor_due is not None
                and floor_due <= now
                and (expiring is None or floor_due <= expiring.expires)
            ):
                self._expire_floor(floor_due, now, events)
            elif expiring is not None and expiring.expires <= now:
                self._queue.remove(expiring)
                events.append(Denied(expiring.device, DENY_QUEUE_TIMEOUT, expiring.request_id))
            else:
                return

    def _expire_floor(self, due: float, now: float, events: list[FloorEvent]) -> None:
        assert self.holder is not None
        if self.state is FloorState.TAKEN:
            # Both may be overdue after a late tick: name the one that fell due first.
            max_due = self._granted_at + self.config.max_burst_s
            media_due = self._last_media + self.config.end_of_media_s
            reason = REVOKE_MAX_DURATION if max_due <= media_due else REVOKE_NO_MEDIA
            events.append(Revoked(self.holder, self.burst, reason, 0))
            self._log.info(
                "floor %s: burst %d of %s revoked (%s)", self.key, self.burst, self.holder, reason
            )
        # In pending-revoke the holder already has its revoke: hand over silently. The burst
        # ended when its timer fell due (hang time); the next holder's timers start now.
        self._hand_over(now, events, ended_at=due)

    def _floor_deadline(self) -> float | None:
        if self.state is FloorState.IDLE:
            return None
        deadline = min(
            self._granted_at + self.config.max_burst_s,
            self._last_media + self.config.end_of_media_s,
        )
        if self.state is FloorState.PENDING_REVOKE:
            deadline = min(deadline, self._grace_until)
        return deadline

    # -- queue helpers --------------------------------------------------------------------

    def _find(self, device: str) -> _Waiting | None:
        for waiting in self._queue:
            if waiting.device == device:
                return waiting
        return None

    def _position(self, device: str) -> int:
        for position, waiting in enumerate(self._queue, 1):
            if waiting.device == device:
                return position
        raise AssertionError(f"{device} is not queued")  # pragma: no cover - internal misuse

    def _drop(self, device: str) -> None:
        waiting = self._find(device)
        if waiting is not None:
            self._queue.remove(waiting)

    def _positions(self) -> dict[str, int]:
        return {waiting.device: position for position, waiting in enumerate(self._queue, 1)}

    def _announce_moves(self, before: dict[str, int], events: list[FloorEvent]) -> None:
        """`Queued(position)` update for every waiting device whose position changed."""
        if not before:
            return
        told = {event.device for event in events if isinstance(event, Queued)}
        for position, waiting in enumerate(self._queue, 1):
            if before.get(waiting.device) != position and waiting.device not in told:
                events.append(Queued(waiting.device, position, None))


def _ms_left(deadline: float, now: float) -> int:
    return max(0, math.floor((deadline - now) * 1000))


def _check_device(device: object) -> None:
    if not isinstance(device, str) or not device:
        raise FloorArgumentError(f"device must be a non-empty string, got {device!r}")


def _check_priority(priority: object) -> Priority:
    if isinstance(priority, Priority):
        return priority
    if isinstance(priority, int) and not isinstance(priority, bool):
        try:
            return Priority(priority)
        except ValueError as exc:
            raise FloorArgumentError(f"unknown priority {priority!r}") from exc
    raise FloorArgumentError(f"priority must be a Priority, got {priority!r}")


def _check_request_id(request_id: object) -> None:
    if request_id is not None and not isinstance(request_id, str):
        raise FloorArgumentError(f"request_id must be a string or None, got {request_id!r}")
