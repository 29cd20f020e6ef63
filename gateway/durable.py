"""DurableWriter: one thread that owns a kind of database write and never loses what it was given.

`submit(items)` is O(1) and never blocks (a SimpleQueue put). The writer thread takes what was
submitted into a bounded in-memory backlog and writes it in batches through `write(batch)`,
which raises on any failure (connect errors included). A failed batch is retried — the same
batch, with capped, jittered exponential backoff — until it commits; meanwhile new items keep
arriving. Past `memory_limit` items in memory they are appended to an on-disk journal, and while
the journal holds anything every new item goes there too, so order is kept: the writer drains
memory first, then the journal, oldest segment first.

Journal (`journal_dir`, 0700): segments `<seq>.jsonl` (0600), one encoded item per line, at
most `max_batch` items each. Each spill (whatever the thread took from the queue in one go) is
one write() and one fsync of the segment; a new segment also fsyncs the directory. A segment is
read and written as one batch, and deleted (and the directory fsynced) only after that batch has
committed: a crash between the commit and the unlink writes that segment again (positions skip
stored keys; events would be stored twice — at least once, never lost). A torn last line (a
crash in mid-append) is logged and skipped. On start, a journal left by a previous run is
drained before anything new (the journal is non-empty, so new items queue behind it).

Without a `journal_dir` the backlog is held in memory only (unbounded) and is lost if the
process dies; `xixin up` always gives one (`data_dir/journal/<name>`).

Stopping writes what is in memory; if the database is down then, memory (and the batch in
flight) goes to the front of the journal and the thread ends — the next start writes it.

`submit(items, on_durable)`: `on_durable()` is called (on the writer thread) once every item of
that submission is committed or in the journal — the moment its sender may be told it is kept
(the tracking ingest sends its MQTT acks then).
"""

from __future__ import annotations

import collections
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final, Generic, Protocol, TypeVar

from gateway.journal import Journal

T = TypeVar("T")

log = logging.getLogger(__name__)

_STOP: Final = None


class _Pending:
    """The items of one submission not yet durable, and whom to tell when none are left."""

    __slots__ = ("done", "remaining")

    def __init__(self, done: Callable[[], None], remaining: int) -> None:
        self.done = done
        self.remaining = remaining

    def settle(self, count: int) -> None:
        self.remaining -= count
        if self.remaining == 0:
            self.done()


_Chunk = tuple[list[T], "_Pending | None"]


class WriterStatus(Protocol):
    """What health and metrics read of a durable writer (from any thread)."""

    @property
    def alive(self) -> bool: ...

    @property
    def backlog(self) -> int: ...

    @property
    def journal_items(self) -> int: ...

    @property
    def outage_s(self) -> float: ...

    def problem(self) -> str | None: ...


class DurableWriter(Generic[T]):
    """One thread, one owner of a kind of write: retried with backoff, spilled past a bound.

    `write(batch)` must commit the whole batch or raise; it is called on the writer thread only.
    `label` names the writer in logs and health ("position writer"), `noun` its items
    ("positions").
    """

    def __init__(
        self,
        write: Callable[[list[T]], None],
        *,
        name: str,
        label: str,
        noun: str,
        encode: Callable[[T], bytes],
        decode: Callable[[bytes], T],
        journal_dir: Path | None = None,
        memory_limit: int = 100_000,
        max_batch: int = 5000,
        max_wait: float = 0.05,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        poll_s: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
        logger: logging.Logger | None = None,
    ) -> None:
        self._write_batch = write
        self.name = name
        self.label = label
        self.noun = noun
        self.max_batch = max(1, max_batch)
        self.max_wait = max_wait
        self.memory_limit = memory_limit
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.poll_s = poll_s
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self.log = logger or log
        self._encode = encode
        self._decode = decode
        self.journal_dir = journal_dir
        self._journal: Journal[T] | None = None
        self._inbox: queue.SimpleQueue[_Chunk[T] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        # Held by the writer thread while items move between queue, memory, batch and journal
        # (an append with its fsync included), so `backlog` is never read in mid-move; never
        # taken by submit(), which must not wait.
        self._count_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False
        # Set once the thread has opened the journal: from then on `backlog` counts what a
        # previous run left in it (a caller that must see it written waits for this first).
        self.opened = threading.Event()
        self._stop_requested = False
        self._stopping = False  # the thread has seen the stop request
        # Counters: `_submitted` under the lock (any thread); the rest by the writer thread.
        self._submitted = 0
        self._taken = 0
        self._memory: collections.deque[_Chunk[T]] = collections.deque()
        self._memory_items = 0
        self._batch: list[T] | None = None
        self._batch_pending: list[tuple[_Pending, int]] = []  # whose items the batch holds
        self._batch_seq: int | None = None  # the journal segment the batch came from
        self.written = 0
        self.batches = 0
        self.failures = 0
        self.internal_errors = 0
        self.spilled = 0
        self._attempts = 0  # consecutive failures of the current batch
        self._outage_since: float | None = None
        self._catching_up = False
        self._backlog_written = 0
        self._outage_duration = 0.0

    # ---- any thread --------------------------------------------------------------------------

    def start(self) -> None:
        self._started = True
        self._thread.start()

    def submit(self, items: list[T], on_durable: Callable[[], None] | None = None) -> None:
        """Queue items for writing: O(1), never blocks, never drops. `on_durable` is called
        on the writer thread once they are all committed or journalled (at once for none)."""
        if not items:
            if on_durable is not None:
                on_durable()
            return
        with self._lock:
            self._submitted += len(items)
        pending = None if on_durable is None else _Pending(on_durable, len(items))
        self._inbox.put((items, pending))

    def stop(self, timeout: float = 30.0) -> None:
        """Write what is in memory (or journal it if the database is down), then stop."""
        self._stop_requested = True
        if self._thread.is_alive():
            self._inbox.put(_STOP)
            self._thread.join(timeout)
            if self._thread.is_alive():
                self.log.error(
                    "%s: not stopped after %.0f s; %d %s not written yet",
                    self.label, timeout, self.backlog, self.noun,
                )  # fmt: skip

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def wait_caught_up(self, timeout: float) -> bool:
        """Wait (blocking) until what was submitted, and what a previous run journalled, is
        committed; False if it is not within `timeout` (the database is down)."""
        deadline = self._clock() + timeout
        self.opened.wait(timeout)
        while self.backlog and self._clock() < deadline:
            self._sleep(0.02)
        return self.opened.is_set() and not self.backlog

    @property
    def journal_items(self) -> int:
        journal = self._journal
        if journal is None:  # not opened yet: what a previous run left is counted on start
            return 0
        return journal.items

    @property
    def lost(self) -> int:
        """Items lost: journal lines that could not be encoded or decoded (each logged)."""
        journal = self._journal
        return 0 if journal is None else journal.corrupt

    @property
    def backlog(self) -> int:
        """Items submitted and not yet committed: queued, in memory, in flight, journalled."""
        with self._count_lock:
            return self._backlog()

    def _backlog(self) -> int:
        batch = self._batch
        queued = self._submitted - self._taken
        in_flight = len(batch) if batch is not None and self._batch_seq is None else 0
        return max(0, queued) + self._memory_items + in_flight + self.journal_items

    @property
    def outage_s(self) -> float:
        """Seconds since the current run of failed writes began; 0 while writes succeed."""
        since = self._outage_since
        return 0.0 if since is None else max(0.0, self._clock() - since)

    def problem(self) -> str | None:
        """Why this writer is not healthy (dead thread, writes failing), or None."""
        if self._started and not self._stop_requested and not self._thread.is_alive():
            return f"{self.label}: thread stopped; {self.backlog} {self.noun} waiting"
        outage = self.outage_s
        if outage > 0:
            journal = self.journal_items
            return (
                f"{self.label}: database unreachable for {outage:.0f} s, {self.backlog} "
                f"{self.noun} waiting ({journal} in the journal)"
            )
        return None

    # ---- writer thread -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._open_journal()
        except Exception:
            self.internal_errors += 1
            self.log.exception("%s: the journal at %s cannot be used", self.label, self.journal_dir)
        self.opened.set()
        while True:
            try:
                if not self._cycle():
                    break
            except Exception:  # never die: log it, pause a moment, carry on
                self.internal_errors += 1
                self.log.exception("%s: unexpected error; carrying on", self.label)
                self._sleep(min(1.0, self.backoff_max))
        if self._journal is not None:
            self._journal.close()

    def _open_journal(self) -> None:
        if self.journal_dir is None:
            return
        self._journal = Journal(
            self.journal_dir, self._encode, self._decode, self.max_batch, self.log
        )
        if self._journal.items:
            self.log.warning(
                "%s: %d %s left in the journal by a previous run; writing them first",
                self.label, self._journal.items, self.noun,
            )  # fmt: skip

    def _cycle(self) -> bool:
        """One batch taken or attempted; False when the thread should end."""
        if self._batch is None:
            journal = self._journal
            if not self._memory and not (journal and journal.items):
                if self._stopping:
                    return False
                self._accept([self._inbox.get()])  # idle: wait for work
                self._absorb()
                return True
            if self._memory:
                self._gather()
                self._take_memory()
            elif self._stopping and self._attempts:  # failing: the journal waits for the next start
                return False
            else:
                self._take_journal()
            if self._batch is None:
                return True
        self._attempt()  # stopping with no journal: retried until stop()'s timeout
        return True

    def _gather(self) -> None:
        """The batching window: wait up to max_wait for a fuller batch (fresh items only)."""
        if self._stopping or self._memory_items >= self.max_batch or self.journal_items:
            self._absorb()
            return
        deadline = time.monotonic() + self.max_wait
        while self._memory_items < self.max_batch and not self._stopping:
            remaining = deadline - time.monotonic()
            try:
                chunk = (
                    self._inbox.get(timeout=remaining)
                    if remaining > 0
                    else (self._inbox.get_nowait())
                )
            except queue.Empty:
                break
            self._accept([chunk])

    def _absorb(self) -> None:
        """Take everything queued now, without waiting."""
        chunks: list[_Chunk[T] | None] = []
        while True:
            try:
                chunks.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        if chunks:
            self._accept(chunks)

    def _accept(self, chunks: list[_Chunk[T] | None]) -> None:
        """Into memory, or past the bound (or behind a non-empty journal) into the journal."""
        with self._count_lock:  # `backlog` sees the items queued, in memory or journalled
            self._accept_counted(chunks)

    def _accept_counted(self, chunks: list[_Chunk[T] | None]) -> None:
        journal = self._journal
        spill: list[T] = []
        spilled: list[_Chunk[T]] = []
        for chunk in chunks:
            if chunk is None:
                self._stopping = True
                continue
            items = chunk[0]
            if journal is not None and (
                spill or journal.items or self._memory_items + len(items) > self.memory_limit
            ):
                spill.extend(items)
                spilled.append(chunk)
            else:
                self._memory.append(chunk)
                self._memory_items += len(items)
                self._taken += len(items)
        if spill:
            assert journal is not None
            try:
                journal.append(spill)
            except Exception:  # disk full or gone: hold them in memory rather than lose them
                self.internal_errors += 1
                self.log.exception(
                    "%s: cannot append %d %s to the journal; holding them in memory",
                    self.label, len(spill), self.noun,
                )  # fmt: skip
                self._memory.extend(spilled)
                self._memory_items += len(spill)
                self._taken += len(spill)
                return
            self._taken += len(spill)
            self.spilled += len(spill)
            for items, pending in spilled:  # in the journal, fsync'd: kept
                if pending is not None:
                    pending.settle(len(items))

    def _take_memory(self) -> None:
        with self._count_lock:
            self._take_memory_counted()

    def _take_memory_counted(self) -> None:
        batch: list[T] = []
        owners: list[tuple[_Pending, int]] = []
        memory = self._memory
        while memory and len(batch) < self.max_batch:
            items, pending = memory[0]
            room = self.max_batch - len(batch)
            if len(items) <= room:
                memory.popleft()
                taken = items
            else:
                taken = items[:room]
                memory[0] = (items[room:], pending)
            batch.extend(taken)
            if pending is not None:
                owners.append((pending, len(taken)))
        self._memory_items -= len(batch)
        self._batch, self._batch_seq = batch, None
        self._batch_pending = owners

    def _settle_batch(self) -> None:
        owners, self._batch_pending = self._batch_pending, []
        for pending, count in owners:
            pending.settle(count)

    def _take_journal(self) -> None:
        assert self._journal is not None
        oldest = self._journal.read_oldest()
        if oldest is None:
            return
        seq, items = oldest
        if not items:  # nothing readable in it (logged): done with it
            self._journal.remove(seq)
            return
        self._batch, self._batch_seq = items, seq

    def _attempt(self) -> None:
        batch = self._batch
        assert batch is not None
        try:
            self._write_batch(batch)
        except Exception as exc:
            self._failed(exc)
            return
        with self._count_lock:
            if self._batch_seq is not None:
                assert self._journal is not None
                self._journal.remove(self._batch_seq)
            self._batch, self._batch_seq = None, None
        self._settle_batch()
        self.written += len(batch)
        self.batches += 1
        self._attempts = 0
        if self._outage_since is not None:
            self._outage_duration = self._clock() - self._outage_since
            self._outage_since = None
            self._catching_up = True
            self._backlog_written = 0
        if self._catching_up:
            self._backlog_written += len(batch)
            if not self.journal_items and self._memory_items < self.max_batch:
                self._catching_up = False
                self.log.info(
                    "%s: the database is back after an outage of %.1f s; %d %s of the backlog "
                    "written",
                    self.label, self._outage_duration, self._backlog_written, self.noun,
                )  # fmt: skip

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self._attempts += 1
        if self._outage_since is None:
            self._outage_since = self._clock()
            self.log.warning(
                "%s: writing %d %s failed (%s: %s); retrying with backoff up to %.1f s, "
                "buffering (journal: %s)",
                self.label, len(self._batch or ()), self.noun, type(exc).__name__, _brief(exc),
                self.backoff_max, self.journal_dir or "none",
            )  # fmt: skip
        if self._stopping:
            if self._journal is not None:
                self._spill_front()
                return
            self._sleep(self.backoff_delay(self._attempts))  # stop()'s timeout bounds this
            return
        self._backoff(self.backoff_delay(self._attempts))

    def backoff_delay(self, attempt: int) -> float:
        """Jittered exponential: the cap times [0.5, 1) at most, never above backoff_max."""
        base = min(self.backoff_max, self.backoff_initial * 2.0 ** min(attempt - 1, 30))
        return base * (0.5 + 0.5 * self._rand())

    def _backoff(self, delay: float) -> None:
        """Wait `delay` while taking in (and spilling) what is submitted meanwhile."""
        end = self._clock() + delay
        while True:
            self._absorb()
            if self._stopping:
                return
            remaining = end - self._clock()
            if remaining <= 0:
                return
            self._sleep(min(remaining, self.poll_s))

    def _spill_front(self) -> None:
        """Stopping with the database down: memory and the batch in flight to the journal's
        front (they are older than anything in it)."""
        assert self._journal is not None
        self._absorb()
        items: list[T] = []
        if self._batch is not None and self._batch_seq is None:
            items.extend(self._batch)
        memory = list(self._memory)
        for chunk, _ in memory:
            items.extend(chunk)
        with self._count_lock:
            self._journal.prepend(items)
            self._memory.clear()
            self._memory_items = 0
            self._batch, self._batch_seq = None, None
        self.spilled += len(items)
        self._settle_batch()
        for chunk, pending in memory:
            if pending is not None:
                pending.settle(len(chunk))
        self.log.warning(
            "%s: stopping while the database is down; %d %s kept in the journal %s",
            self.label, self._journal.items, self.noun, self._journal.directory,
        )  # fmt: skip


def _brief(exc: BaseException) -> str:
    """The first line of an error: a database driver's error text carries the SQL and its
    parameters (device ids, positions) on later lines, which have no place in a log."""
    original = getattr(exc, "orig", None)  # SQLAlchemy's wrapper of the driver's error
    text = str(original if original is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class DurableWrapper(Generic[T]):
    """What a writer built on a DurableWriter (`self.core`) shows health and metrics."""

    core: DurableWriter[T]

    def start(self) -> None:
        self.core.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Write what is in memory, or journal it if the database is down (a locked SQLite
        takes its 5 s busy timeout to say so: hence the margin)."""
        self.core.stop(timeout)

    @property
    def failures(self) -> int:
        return self.core.failures

    @property
    def batches(self) -> int:
        return self.core.batches

    @property
    def alive(self) -> bool:
        return self.core.alive

    @property
    def backlog(self) -> int:
        return self.core.backlog

    @property
    def journal_items(self) -> int:
        return self.core.journal_items

    @property
    def outage_s(self) -> float:
        return self.core.outage_s

    def problem(self) -> str | None:
        return self.core.problem()
