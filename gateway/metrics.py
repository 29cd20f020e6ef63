"""Gateway counters: plain integers on the hot path, exported to Prometheus at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.durable import WriterStatus


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
        yield _family(
            CounterMetricFamily, "xixin_frames_relayed", "Voice frames relayed downlink", c.relayed
        )
        yield _family(
            CounterMetricFamily,
            "xixin_frames_dropped",
            "Voice frames dropped, by reason",
            c.dropped,
            "reason",
        )
        yield _family(
            CounterMetricFamily,
            "xixin_floor_events",
            "Floor decisions (grant, deny, revoke, queued)",
            c.floor,
            "event",
        )
        yield _family(
            CounterMetricFamily,
            "xixin_control_rejected",
            "Control/status messages rejected, by code",
            c.rejected,
            "code",
        )
        yield _family(
            CounterMetricFamily, "xixin_control_messages", "Control messages received", c.control_in
        )
        live = self.gauges()
        yield _family(
            GaugeMetricFamily, "xixin_devices_online", "Devices online", live.devices_online
        )
        yield _family(
            GaugeMetricFamily,
            "xixin_floors_taken",
            "Talkgroups and calls with a talker",
            live.floors_taken,
        )
        yield _family(
            GaugeMetricFamily,
            "xixin_floor_queue_depth",
            "Waiting floor requests",
            live.queue_depths,
            "floor",
        )


class RecorderStats(Protocol):
    """What the recorder link reports (gateway.recorder_process.RecorderLink)."""

    @property
    def dropped(self) -> int: ...

    @property
    def backlog(self) -> int: ...


class RecorderCollector(Collector):
    """Recording losses and the backlog waiting for the (lowest-priority) recorder process."""

    def __init__(self, recorder: RecorderStats) -> None:
        self.recorder = recorder

    def collect(self) -> Iterator[Metric]:
        yield _family(
            CounterMetricFamily,
            "xixin_recording_frames_dropped",
            "Relayed frames missing from recordings (recorder backlog full or recorder gone)",
            self.recorder.dropped,
        )
        yield _family(
            GaugeMetricFamily,
            "xixin_recorder_backlog_bytes",
            "Frames waiting in the gateway for the recorder process",
            self.recorder.backlog,
        )


class ServiceCollector(Collector):
    """Durable database writers (backlog, journal, outage) and managed broker restarts."""

    def __init__(
        self,
        writers: Callable[[], Iterable[tuple[str, WriterStatus]]],
        broker_restarts: Callable[[], int],
    ) -> None:
        self.writers = writers
        self.broker_restarts = broker_restarts

    def collect(self) -> Iterator[Metric]:
        writers = list(self.writers())
        yield _family(
            GaugeMetricFamily,
            "xixin_writer_backlog",
            "Items submitted to a database writer and not yet committed (memory and journal)",
            {name: w.backlog for name, w in writers},
            "writer",
        )
        yield _family(
            GaugeMetricFamily,
            "xixin_writer_journal_items",
            "Items of a database writer waiting in its on-disk journal",
            {name: w.journal_items for name, w in writers},
            "writer",
        )
        outage = GaugeMetricFamily(
            "xixin_writer_outage_seconds",
            "Seconds since a database writer's writes began failing (0 while they succeed)",
            labels=["writer"],
        )
        for name, writer in sorted(writers, key=lambda item: item[0]):
            outage.add_metric([name], writer.outage_s)
        yield outage
        yield _family(
            GaugeMetricFamily,
            "xixin_writer_alive",
            "1 while a database writer's thread runs",
            {name: int(w.alive) for name, w in writers},
            "writer",
        )
        yield _family(
            CounterMetricFamily,
            "xixin_broker_restarts",
            "Restarts of the managed broker after it died",
            self.broker_restarts(),
        )


def _family(
    kind: type[CounterMetricFamily] | type[GaugeMetricFamily],
    name: str,
    documentation: str,
    values: int | dict[str, int],
    label: str | None = None,
) -> Metric:
    """One metric: a single value, or one sample per label value (sorted)."""
    family = kind(name, documentation, labels=[label] if label else None)
    if isinstance(values, dict):
        for key, value in sorted(values.items()):
            family.add_metric([key], value)
    else:
        family.add_metric([], values)
    return family
