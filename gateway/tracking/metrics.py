"""Prometheus view of the tracking counters, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from gateway.tracking.service import TrackingService


class TrackingCollector(Collector):
    def __init__(self, service: TrackingService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        stats = self.service.stats()
        received = CounterMetricFamily(
            "xixin_beacons_received", "Beacons received, by format", labels=["format"]
        )
        for fmt, count in sorted(stats["received"].items()):
            received.add_metric([fmt], count)
        yield received
        rejected = CounterMetricFamily(
            "xixin_beacons_rejected",
            "Beacons that could not be parsed, by reason",
            labels=["reason"],
        )
        for reason, count in sorted(stats["rejected"].items()):
            rejected.add_metric([reason], count)
        yield rejected
        filtered = CounterMetricFamily(
            "xixin_positions_filtered", "Positions dropped by the filter chain, by rule",
            labels=["reason"],
        )  # fmt: skip
        for reason, count in sorted(stats["filtered"].items()):
            filtered.add_metric([reason], count)
        yield filtered
        stored = CounterMetricFamily("xixin_positions_stored", "Positions committed")
        stored.add_metric([], stats["stored"])
        yield stored
        pending = GaugeMetricFamily("xixin_positions_pending", "Positions waiting for the writer")
        pending.add_metric([], stats["pending"])
        yield pending
