"""What the control plane's parts produce: messages to publish, events, counted rejections."""

from __future__ import annotations

import logging
from typing import Any

from gateway.events import GatewayEvent, Outbound
from gateway.log_once import LogOnce
from gateway.metrics import Counters
from protocol import topics
from protocol.control import encode


class Output:
    """The shared outbox and event list, appended to by every part and drained by the runner."""

    def __init__(self, counters: Counters, logger: logging.Logger) -> None:
        self.counters = counters
        self.outbox: list[Outbound] = []
        self.events: list[GatewayEvent] = []
        self._log_once = LogOnce(logger)

    def publish(self, topic: str, payload: bytes) -> None:
        self.outbox.append(Outbound(topic, payload))

    def reply(self, device: str, msg_type: str, **fields: Any) -> None:
        """A control message to one device (its `ctrl/down`)."""
        self.outbox.append(Outbound(topics.ctrl_down(device), encode(msg_type, **fields)))

    def event(self, kind: str, device: str | None, wall_ms: int, data: dict[str, Any]) -> None:
        self.events.append(GatewayEvent(kind, device, wall_ms, data))

    def reject(self, reason: str, key: str, fmt: str, *args: object) -> None:
        """Count every rejection; log each (reason, key) only once."""
        self.counters.rejected[reason] = self.counters.rejected.get(reason, 0) + 1
        self._log_once.warning((reason, key), fmt, *args)
