"""What the control plane hands the runner: messages to publish and events to store or stream.

Kept apart from the control plane so that consumers of events (the event log, tracking) do not
depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Outbound:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


@dataclass(frozen=True, slots=True)
class GatewayEvent:
    """Something worth storing and showing on the console (floor, presence, alarm, command)."""

    kind: str
    device: str | None
    wall_ms: int
    data: dict[str, Any] = field(default_factory=dict)
