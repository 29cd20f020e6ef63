"""Vocabulary of floor control (docs/protocol.md §5-§6): priorities, states, settings, events.

Kept apart from the state machine in :mod:`gateway.floor`, which re-exports everything here.
Each event maps 1:1 onto a protocol message, named by its ``message`` class attribute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import ClassVar

MAX_BURST_ID = 0xFFFF

DENY_BUSY = "busy"
DENY_QUEUE_FULL = "queue_full"
DENY_QUEUE_TIMEOUT = "queue_timeout"
FLOOR_DENY_REASONS = frozenset({DENY_BUSY, DENY_QUEUE_FULL, DENY_QUEUE_TIMEOUT})

REVOKE_PREEMPTED = "preempted"
REVOKE_MAX_DURATION = "max_duration"
REVOKE_NO_MEDIA = "no_media"
REVOKE_ADMINISTRATIVE = "administrative"
REVOKE_REASONS = frozenset(
    {REVOKE_PREEMPTED, REVOKE_MAX_DURATION, REVOKE_NO_MEDIA, REVOKE_ADMINISTRATIVE}
)


class FloorError(Exception):
    """Base class of floor-control errors."""


class FloorConfigError(FloorError, ValueError):
    """A :class:`FloorConfig` value is out of range."""


class FloorArgumentError(FloorError, ValueError):
    """A method of :class:`Floor` was called with an invalid argument."""


class Priority(IntEnum):
    """Request priority; a higher value pre-empts a lower one."""

    NORMAL = 0
    DISPATCHER = 1
    EMERGENCY = 2

    @property
    def label(self) -> str:
        """The protocol spelling (`floor_taken.priority`)."""
        return self.name.lower()


class FloorState(StrEnum):
    IDLE = "idle"
    TAKEN = "taken"
    PENDING_REVOKE = "pending_revoke"


@dataclass(frozen=True, slots=True)
class FloorConfig:
    """Timer and queue settings; the defaults are those of docs/protocol.md §6."""

    max_burst_s: float = 30.0
    end_of_media_s: float = 4.0
    preempt_grace_s: float = 3.0
    hang_time_s: float = 2.0
    queue_enabled: bool = True
    queue_depth: int = 8
    queue_timeout_s: float = 30.0
    # After the holder's release, its frames of that burst still relayed (see Floor.media).
    release_tail_s: float = 1.0

    def __post_init__(self) -> None:
        # Zero would make tick() loop on an ever-due timer, hence strictly positive.
        for name in ("max_burst_s", "end_of_media_s", "queue_timeout_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise FloorConfigError(f"{name} must be a positive finite number, got {value!r}")
        for name in ("preempt_grace_s", "hang_time_s", "release_tail_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise FloorConfigError(f"{name} must be a finite number >= 0, got {value!r}")
        if isinstance(self.queue_depth, bool) or not isinstance(self.queue_depth, int):
            raise FloorConfigError(f"queue_depth must be an int, got {self.queue_depth!r}")
        if self.queue_depth < 1:
            raise FloorConfigError(f"queue_depth must be >= 1, got {self.queue_depth}")

    @property
    def max_ms(self) -> int:
        return round(self.max_burst_s * 1000)

    @property
    def grace_ms(self) -> int:
        return round(self.preempt_grace_s * 1000)


DEFAULT_CONFIG = FloorConfig()


@dataclass(frozen=True, slots=True)
class FloorEvent:
    """Something the gateway must publish; ``message`` is the protocol message type."""

    message: ClassVar[str] = ""


@dataclass(frozen=True, slots=True)
class Granted(FloorEvent):
    """`floor_granted` to `device`: talk with `burst` for at most `max_ms`."""

    message: ClassVar[str] = "floor_granted"
    device: str
    burst: int
    max_ms: int
    request_id: str | None


@dataclass(frozen=True, slots=True)
class Queued(FloorEvent):
    """`floor_queued` to `device`; `request_id` is None on a later position update."""

    message: ClassVar[str] = "floor_queued"
    device: str
    position: int
    request_id: str | None


@dataclass(frozen=True, slots=True)
class Denied(FloorEvent):
    """`floor_deny` to `device` with one of :data:`FLOOR_DENY_REASONS`."""

    message: ClassVar[str] = "floor_deny"
    device: str
    reason: str
    request_id: str | None


@dataclass(frozen=True, slots=True)
class Revoked(FloorEvent):
    """`floor_revoke` to the holder: stop talking within `grace_ms`."""

    message: ClassVar[str] = "floor_revoke"
    device: str
    burst: int
    reason: str
    grace_ms: int


@dataclass(frozen=True, slots=True)
class Released(FloorEvent):
    """`floor_released` reply to `device`'s `floor_release`."""

    message: ClassVar[str] = "floor_released"
    device: str
    request_id: str | None


@dataclass(frozen=True, slots=True)
class Taken(FloorEvent):
    """`floor_taken` broadcast; `call` stays the same across bursts within the hang time."""

    message: ClassVar[str] = "floor_taken"
    by: str
    burst: int
    priority: Priority
    call: int


@dataclass(frozen=True, slots=True)
class Idle(FloorEvent):
    """`floor_idle` broadcast."""

    message: ClassVar[str] = "floor_idle"
