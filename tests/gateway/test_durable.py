"""The durable writer core with an injected store and a fake clock: retries with capped backoff,
spill to the journal past the memory bound, order, drain, replay after a crash, survival."""

from __future__ import annotations

import json
import logging
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.durable import DurableWriter

DEADLINE_S = 30.0


def until(predicate: Callable[[], bool], what: str = "condition") -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


class FakeTime:
    """A clock that only moves when the writer sleeps; sleeping yields the GIL, nothing more."""

    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        time.sleep(0.0005)


class Store:
    """A database stand-in: `down` makes writes raise; `block` parks the writer (a crash)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.rows: list[int] = []
        self.down = False
        self.block = threading.Event()
        self.blocking = False
        self.attempts: list[float] = []

    def write(self, batch: list[int]) -> None:
        self.attempts.append(self.clock())
        if self.blocking:
            self.block.wait()  # released at teardown: the writer then stops into its journal
            raise ConnectionRefusedError("crashed")
        if self.down:
            raise ConnectionRefusedError("database unreachable")
        self.rows.extend(batch)


def encode(item: int) -> bytes:
    return json.dumps(item).encode()


def decode(line: bytes) -> int:
    value = json.loads(line)
    assert isinstance(value, int)
    return value


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def make(fake: FakeTime) -> Iterator[Callable[..., tuple[DurableWriter[int], Store]]]:
    made: list[tuple[DurableWriter[int], Store]] = []

    def build(journal: Path | None = None, **kwargs: object) -> tuple[DurableWriter[int], Store]:
        store = Store(fake.clock)
        options: dict[str, object] = {
            "name": "test-writer", "label": "test writer", "noun": "items",
            "encode": encode, "decode": decode, "journal_dir": journal, "memory_limit": 10,
            "max_batch": 5, "max_wait": 0.0, "clock": fake.clock, "sleep": fake.sleep,
            "rand": lambda: 1.0,
        }  # fmt: skip
        options.update(kwargs)
        writer: DurableWriter[int] = DurableWriter(store.write, **options)  # type: ignore[arg-type]
        made.append((writer, store))
        return writer, store

    yield build
    for writer, store in made:
        store.block.set()
        store.down = store.blocking
        writer.stop(10)


def test_backoff_doubles_is_capped_and_jittered_below_the_cap(
    make: Callable[..., tuple[DurableWriter[int], Store]],
) -> None:
    writer, _ = make(rand=lambda: 1.0)
    assert [writer.backoff_delay(n) for n in range(1, 10)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]
    )
    low, _ = make(rand=lambda: 0.0)
    assert low.backoff_delay(1) == pytest.approx(0.05) and low.backoff_delay(40) == 2.5


def test_a_failing_store_is_retried_with_backoff_and_one_warning(
    make: Callable[..., tuple[DurableWriter[int], Store]],
    fake: FakeTime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    writer, store = make()
    store.down = True
    caplog.set_level(logging.INFO, logger="gateway.durable")
    writer.start()
    writer.submit([1, 2, 3])
    until(lambda: writer.failures >= 10, "ten failed attempts")
    gaps = [b - a for a, b in zip(store.attempts, store.attempts[1:], strict=False)][:9]
    assert gaps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0], abs=1e-6)
    assert writer.alive and writer.backlog == 3 and writer.outage_s > 20
    problem = writer.problem()
    assert problem is not None and problem.startswith("test writer: database unreachable for")
    assert "3 items waiting (0 in the journal)" in problem
    store.down = False
    until(lambda: store.rows == [1, 2, 3], "the batch written")
    until(lambda: writer.outage_s == 0 and writer.problem() is None, "recovery")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(warnings) == 1 and "ConnectionRefusedError" in warnings[0].getMessage()
    assert len(infos) == 1 and "3 items of the backlog written" in infos[0].getMessage()
    assert writer.backlog == 0


def test_past_the_memory_bound_items_spill_to_the_journal_in_order(
    make: Callable[..., tuple[DurableWriter[int], Store]], tmp_path: Path
) -> None:
    journal = tmp_path / "journal" / "items"
    writer, store = make(journal)
    store.down = True
    for start in range(0, 20, 4):
        writer.submit(list(range(start, start + 4)))
    writer.start()
    # 8 in memory (the bound is 10), the next chunk and all after it journalled.
    until(lambda: writer.journal_items == 12 and writer.failures > 0, "12 items journalled")
    assert writer.backlog == 20
    assert stat.S_IMODE(journal.stat().st_mode) == 0o700
    segments = sorted(journal.iterdir())
    assert segments and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in segments)
    writer.submit([20, 21])  # behind a non-empty journal: journalled too, order kept
    until(lambda: writer.journal_items == 14, "later items journalled")
    store.down = False
    until(lambda: writer.backlog == 0, "the backlog drained")
    assert store.rows == list(range(22))
    assert list(journal.iterdir()) == []  # segments deleted once committed
    writer.submit([22])
    until(lambda: store.rows[-1:] == [22], "a new item after the drain")


def test_a_journal_left_by_a_crash_is_written_first_on_the_next_start(
    make: Callable[..., tuple[DurableWriter[int], Store]], tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    crashed, store = make(journal, memory_limit=4)
    store.down = True
    for start in range(0, 30, 3):
        crashed.submit(list(range(start, start + 3)))
    crashed.start()
    until(lambda: crashed.journal_items == 27 and crashed.failures > 0, "overflow journalled")
    store.blocking = True  # the process "dies": this thread never comes back
    # A torn last line, as an append cut short by the crash would leave.
    last = sorted(journal.iterdir())[-1]
    with last.open("ab") as file:
        file.write(b"12")
    writer, fresh = make(journal, memory_limit=4)
    writer.submit([100, 101])
    writer.start()
    until(lambda: writer.backlog == 0 and 101 in fresh.rows, "replay and new items written")
    # What the crashed writer had journalled (items 3..29), then the new ones; the torn line is
    # skipped (and logged); the crashed writer's in-memory items are gone with its process.
    assert fresh.rows == [*range(3, 30), 100, 101]
    assert writer.lost == 1


def test_stopping_while_the_database_is_down_keeps_everything_for_the_next_start(
    make: Callable[..., tuple[DurableWriter[int], Store]], tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    writer, store = make(journal)
    store.down = True
    for start in range(0, 20, 4):
        writer.submit(list(range(start, start + 4)))
    writer.start()
    until(lambda: writer.journal_items == 12 and writer.failures > 0, "overflow journalled")
    writer.stop(10)
    assert not writer.alive and writer.journal_items == 20 and store.rows == []
    again, fresh = make(journal)
    again.start()
    until(lambda: again.backlog == 0 and len(fresh.rows) == 20, "replayed")
    assert fresh.rows == list(range(20))
    assert list(journal.iterdir()) == []


def test_the_thread_survives_an_unexpected_error(
    make: Callable[..., tuple[DurableWriter[int], Store]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    writer, store = make()
    take = writer._take_memory
    calls = {"n": 0}

    def broken() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug")
        take()

    writer._take_memory = broken  # type: ignore[method-assign]
    writer.start()
    writer.submit([1, 2])
    until(lambda: store.rows == [1, 2], "written after the error")
    assert writer.alive and writer.internal_errors == 1
    assert any("unexpected error" in r.getMessage() and r.exc_info for r in caplog.records)
    writer.stop(10)
    assert not writer.alive and writer.problem() is None


def test_submit_never_blocks_and_without_a_journal_memory_holds_everything(
    make: Callable[..., tuple[DurableWriter[int], Store]],
) -> None:
    writer, store = make(None, memory_limit=3)
    store.down = True
    writer.start()
    for i in range(50):
        writer.submit([i])
    until(lambda: writer.backlog == 50 and writer.failures >= 2, "all held")
    assert writer.journal_items == 0
    store.down = False
    until(lambda: len(store.rows) == 50, "all written")
    assert store.rows == list(range(50))


def test_a_failure_is_logged_without_the_sql_or_its_parameters() -> None:
    import sqlalchemy

    from gateway.durable import _brief

    error = sqlalchemy.exc.OperationalError(
        "INSERT INTO track_events VALUES (?, ?)", ("T002", 30.87), Exception("database is locked")
    )
    assert _brief(error) == "database is locked"
    assert _brief(RuntimeError("one\ntwo")) == "one"
