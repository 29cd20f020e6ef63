"""The ingest worker's flush: one message that fails must not lose the rest of its read."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

import pytest

from gateway.tracking.config import TrackingConfig
from gateway.tracking.ingest import IngestWorker
from gateway.tracking.pipeline import TrackingPipeline
from gateway.tracking.store import PositionRow
from protocol.org import default_org
from transport.address import BrokerAddress

ORG = default_org()
LON, LAT = ORG.grids["grid-01"].centre
T0 = 1_764_300_000.0
BIG = b"1" + b"0" * 400  # a JSON integer no float can hold


class FakeWriter:
    def __init__(self) -> None:
        self.rows: list[PositionRow] = []

    def submit(self, rows: list[PositionRow], on_durable: Callable[[], None] | None = None) -> None:
        self.rows += rows


class BuggyPipeline(TrackingPipeline):
    """A pipeline whose hot path itself blows up on one topic (a bug past its own guard)."""

    def handle(self, topic: str, payload: bytes, now: float) -> None:
        if topic == "xixin/v1/dev/T002/gps":
            raise RuntimeError("pipeline bug")
        super().handle(topic, payload, now)


def gps(ts: float) -> bytes:
    return json.dumps({"v": 1, "ts": int(ts * 1000), "lat": LAT, "lon": LON}).encode()


def flush(pipeline: TrackingPipeline, inbox: list[tuple[str, bytes]]) -> FakeWriter:
    writer = FakeWriter()
    worker = IngestWorker(
        BrokerAddress("127.0.0.1", 1883), pipeline, writer,  # type: ignore[arg-type]
        client_id="test-ingest", clock=lambda: T0,
    )  # fmt: skip

    async def run() -> None:
        worker._inbox = [(topic, payload, T0) for topic, payload in inbox]
        worker.flush()
        worker.analyse()

    asyncio.run(run())
    assert worker.messages == len(inbox)
    return writer


def make(cls: type[TrackingPipeline] = TrackingPipeline) -> TrackingPipeline:
    return cls(
        TrackingConfig(), ORG, is_device={"T001", "T002"}.__contains__, assigned_grid={}.get,
        logger=logging.getLogger("test.ingest"),
    )  # fmt: skip


def test_a_malformed_message_in_a_read_loses_nothing_else() -> None:
    pipeline = make()
    writer = flush(
        pipeline,
        [
            ("xixin/v1/dev/T001/gps", gps(T0 - 2)),
            ("owntracks/T001/phone", b'{"_type":"location","tst":1,"lat":%s,"lon":1}' % BIG),
            ("xixin/v1/dev/T001/gps", b'{"v":1,"ts":%s,"lat":1,"lon":1}' % BIG),
            ("xixin/v1/dev/T001/gps", gps(T0 - 1)),
        ],
    )
    assert [row[1] for row in writer.rows] == [T0 - 2, T0 - 1]
    assert dict(pipeline.counters.rejected) == {"bad_field": 2}


def test_a_message_that_makes_the_pipeline_raise_is_counted_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pipeline = make(BuggyPipeline)
    with caplog.at_level(logging.ERROR, logger="test.ingest"):
        writer = flush(
            pipeline,
            [
                ("xixin/v1/dev/T001/gps", gps(T0 - 3)),
                ("xixin/v1/dev/T002/gps", gps(T0 - 2)),
                ("xixin/v1/dev/T002/gps", gps(T0 - 1)),
                ("xixin/v1/dev/T001/gps", gps(T0 - 1)),
            ],
        )
    assert [row[1] for row in writer.rows] == [T0 - 3, T0 - 1]
    assert dict(pipeline.counters.rejected) == {"internal": 2}
    (record,) = caplog.records  # logged once, with its traceback
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
