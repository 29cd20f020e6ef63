"""What the broker says about itself in `$SYS`: messages it dropped (a full client queue) and
the bytes it holds queued. Any drop is an alarm: a QoS 1 beacon the broker acknowledged and then
dropped is lost, and a dropped voice frame is a gap someone heard."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

DROPPED_TOPIC: Final = "$SYS/broker/publish/messages/dropped"
STORED_BYTES_TOPIC: Final = "$SYS/broker/store/messages/bytes"
SUBSCRIPTIONS: Final = [(DROPPED_TOPIC, 0), (STORED_BYTES_TOPIC, 0)]
ALARM_S: Final = 300.0  # health stays degraded this long after the last drop seen


class BrokerStats:
    """Sans-I/O: fed the `$SYS` messages with the time they arrived."""

    def __init__(self) -> None:
        self.baseline: int | None = None  # the broker's count when we first saw it
        self.dropped_total = 0  # dropped since this gateway started watching
        self.last_drop_at: float | None = None
        self.stored_bytes = 0
        self._last_count: int | None = None

    def on_message(self, topic: str, payload: bytes, now: float) -> bool:
        """True if the message was one of ours (a `$SYS` topic we watch)."""
        try:
            value = int(payload.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            return topic in (DROPPED_TOPIC, STORED_BYTES_TOPIC)
        if topic == STORED_BYTES_TOPIC:
            self.stored_bytes = value
            return True
        if topic != DROPPED_TOPIC:
            return False
        if self._last_count is None or value < self._last_count:
            # First sight, or the broker restarted and counts from 0 again.
            self.baseline = value if self._last_count is None else 0
            if self._last_count is not None and value > 0:
                self._count(value, now)
        elif value > self._last_count:
            self._count(value - self._last_count, now)
        self._last_count = value
        return True

    def _count(self, dropped: int, now: float) -> None:
        self.dropped_total += dropped
        self.last_drop_at = now

    def problem(self, now: float) -> str | None:
        """The alarm for health, while a drop is recent."""
        if self.last_drop_at is None or now - self.last_drop_at > ALARM_S:
            return None
        return (
            f"the broker dropped {self.dropped_total} messages since the gateway started "
            f"(the last {now - self.last_drop_at:.0f} s ago): a client's queue was full"
        )


class BrokerStatsCollector(Collector):
    def __init__(self, stats: BrokerStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        dropped = CounterMetricFamily(
            "xixin_broker_messages_dropped",
            "Messages the broker dropped (a client queue full), since the gateway started",
        )
        dropped.add_metric([], self.stats.dropped_total)
        yield dropped
        stored = GaugeMetricFamily(
            "xixin_broker_stored_bytes", "Bytes of messages the broker holds (queued, retained)"
        )
        stored.add_metric([], self.stats.stored_bytes)
        yield stored
