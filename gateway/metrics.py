"""Gateway counters: plain integers on the hot path, exported to Prometheus at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass(slots=True)
class Counters:
    relayed: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    floor: dict[str, int] = field(
        default_factory=lambda: {"grant": 0, "deny": 0, "revoke": 0, "queued": 0}
    )
    rejected: dict[str, int] = field(default_factory=dict)
    control_in: int = 0
    receiver_reports: int = 0


@dataclass(frozen=True, slots=True)
class LiveGauges:
    devices_online: int
    queue_depths: dict[str, int]
    floors_taken: int


class GatewayCollector(Collector):
    """Reads the counters when Prometheus scrapes; nothing is paid per frame."""

    def __init__(self, counters: Counters, gauges: Callable[[], LiveGauges]) -> None:
        self.counters = counters
        self.gauges = gauges

    def collect(self) -> Iterator[Metric]:
        c = self.counters
        relayed = CounterMetricFamily("xixin_frames_relayed", "Voice frames relayed downlink")
        relayed.add_metric([], c.relayed)
        yield relayed
        dropped = CounterMetricFamily(
            "xixin_frames_dropped", "Voice frames dropped, by reason", labels=["reason"]
        )
        for reason, count in sorted(c.dropped.items()):
            dropped.add_metric([reason], count)
        yield dropped
        floor = CounterMetricFamily(
            "xixin_floor_events", "Floor decisions (grant, deny, revoke, queued)", labels=["event"]
        )
        for event, count in sorted(c.floor.items()):
            floor.add_metric([event], count)
        yield floor
        rejected = CounterMetricFamily(
            "xixin_control_rejected", "Control/status messages rejected, by code", labels=["code"]
        )
        for code, count in sorted(c.rejected.items()):
            rejected.add_metric([code], count)
        yield rejected
        control = CounterMetricFamily("xixin_control_messages", "Control messages received")
        control.add_metric([], c.control_in)
        yield control
        live = self.gauges()
        online = GaugeMetricFamily("xixin_devices_online", "Devices online")
        online.add_metric([], live.devices_online)
        yield online
        taken = GaugeMetricFamily("xixin_floors_taken", "Talkgroups and calls with a talker")
        taken.add_metric([], live.floors_taken)
        yield taken
        depth = GaugeMetricFamily(
            "xixin_floor_queue_depth", "Waiting floor requests", labels=["floor"]
        )
        for key, value in sorted(live.queue_depths.items()):
            depth.add_metric([key], value)
        yield depth
