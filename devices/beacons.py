"""Store-and-forward for GPS beacons (docs/protocol.md §7): in order, bounded, nothing lost.

Every fix the terminal takes goes into a :class:`BeaconQueue`. While connected, the oldest
unsent beacons are published (QoS 1) up to a window; a beacon leaves the queue only when the
broker's PUBACK arrives. When the connection drops, beacons in flight go back to the head of the
queue and are sent again, first, after reconnecting (so a subscriber sees fixes in order; QoS 1
may repeat one). Beacons taken while offline are also written to a :class:`BeaconJournal` on disk
so a power cycle keeps them; the journal is deleted once everything is acknowledged.

When the queue is full the oldest beacon is dropped and counted: a terminal offline for longer
than `capacity` beacons keeps the most recent track.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from devices.errors import DevicesError
from devices.session import Beacon, SessionError
from protocol.limits import BEACON_STORE, BEACON_WINDOW

log = logging.getLogger(__name__)


class BeaconStoreError(DevicesError):
    """The on-disk beacon journal cannot be read or written."""


class BeaconJournal:
    """Beacons as JSON lines in one file (append while offline, rewrite on overflow)."""

    def __init__(self, path: Path, logger: logging.Logger | None = None) -> None:
        self.path = path
        self.log = logger or log

    def append(self, beacons: list[Beacon]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as handle:
                handle.write(b"".join(b.to_json() + b"\n" for b in beacons))
        except OSError as exc:
            raise BeaconStoreError(f"cannot write beacon journal {self.path}: {exc}") from exc

    def rewrite(self, beacons: list[Beacon]) -> None:
        temp = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temp.write_bytes(b"".join(b.to_json() + b"\n" for b in beacons))
            os.replace(temp, self.path)
        except OSError as exc:
            raise BeaconStoreError(f"cannot rewrite beacon journal {self.path}: {exc}") from exc

    def load(self) -> list[Beacon]:
        """The journaled beacons in order; an unreadable line (torn write) is skipped."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise BeaconStoreError(f"cannot read beacon journal {self.path}: {exc}") from exc
        beacons: list[Beacon] = []
        for line in data.splitlines():
            try:
                beacons.append(Beacon.from_json(line))
            except SessionError:
                self.log.warning("skipping an unreadable line in %s", self.path)
        return beacons

    def clear(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise BeaconStoreError(f"cannot remove beacon journal {self.path}: {exc}") from exc


@dataclass(slots=True)
class QueuedBeacon:
    seq: int
    beacon: Beacon
    taken_at: float
    sent: bool = False


@dataclass(slots=True)
class BeaconCounters:
    taken: int = 0
    sent: int = 0  # publishes, including repeats after a lost connection
    acked: int = 0
    refused: int = 0  # PUBACK with a failure reason code (not authorised): not retried
    overflowed: int = 0
    restored: int = 0  # loaded from the journal at start
    queued_offline: int = 0


class BeaconQueue:
    """The sans-I/O queue; the I/O shell calls :meth:`to_send`, :meth:`acked`, :meth:`lost`."""

    def __init__(
        self,
        capacity: int = BEACON_STORE,  # the gateway's beacon burst holds this many (§7)
        window: int = BEACON_WINDOW,
        journal: BeaconJournal | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        if capacity < 1 or window < 1:
            raise BeaconStoreError("capacity and window must be at least 1")
        self.capacity = capacity
        self.window = window
        self.journal = journal
        self.log = logger or log
        self.counters = BeaconCounters()
        self._queue: deque[QueuedBeacon] = deque()
        self._by_seq: dict[int, QueuedBeacon] = {}
        self._next_seq = 1
        self._in_flight = 0
        self.online = False
        self._journaled = False
        if journal is not None:
            for beacon in journal.load():
                self._append(beacon, 0.0)
                self.counters.restored += 1
            self._journaled = bool(self._queue)

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def oldest_age(self, now: float) -> float:
        return now - self._queue[0].taken_at if self._queue else 0.0

    def take(self, beacon: Beacon, now: float) -> None:
        """A new fix: queue it (and journal it when offline)."""
        self.counters.taken += 1
        self._append(beacon, now)
        if not self.online:
            self.counters.queued_offline += 1
            if self.journal is not None and len(self._queue) <= self.capacity:
                self.journal.append([beacon])  # on overflow _trim rewrites the whole file
                self._journaled = True
        self._trim()

    def _append(self, beacon: Beacon, now: float) -> None:
        entry = QueuedBeacon(self._next_seq, beacon, now)
        self._next_seq += 1
        self._queue.append(entry)
        self._by_seq[entry.seq] = entry

    def _trim(self) -> None:
        overflow = False
        while len(self._queue) > self.capacity:
            # Drop the oldest beacon not in flight (one in flight may still be acknowledged).
            victim = next((e for e in self._queue if not e.sent), None)
            if victim is None:
                break
            self._queue.remove(victim)
            del self._by_seq[victim.seq]
            self.counters.overflowed += 1
            overflow = True
        if overflow and not self.online and self.journal is not None:
            self.journal.rewrite([e.beacon for e in self._queue])
            self._journaled = True

    def to_send(self) -> list[tuple[int, Beacon]]:
        """Beacons to publish now, oldest first, filling the in-flight window (online only)."""
        if not self.online:
            return []
        out: list[tuple[int, Beacon]] = []
        for entry in self._queue:
            if self._in_flight >= self.window:
                break
            if not entry.sent:
                entry.sent = True
                self._in_flight += 1
                self.counters.sent += 1
                out.append((entry.seq, entry.beacon))
        return out

    def acked(self, seq: int, ok: bool = True) -> None:
        """The PUBACK for beacon `seq` came (ok=False: the broker refused it; it is dropped)."""
        entry = self._by_seq.pop(seq, None)
        if entry is None:
            return
        self._queue.remove(entry)
        self._in_flight -= 1
        if ok:
            self.counters.acked += 1
        else:
            self.counters.refused += 1
        if not self._queue and self._journaled and self.journal is not None:
            self.journal.clear()
            self._journaled = False

    def lost(self, seq: int) -> None:
        """The connection died before beacon `seq` was acknowledged: send it again later."""
        entry = self._by_seq.get(seq)
        if entry is not None and entry.sent:
            entry.sent = False
            self._in_flight -= 1

    def set_online(self, online: bool, keep_in_flight: bool = False) -> None:
        """Connection state changes; going offline journals what is still unacknowledged.

        keep_in_flight: the transport re-sends its own unacknowledged publishes after
        reconnecting (paho does), so beacons in flight stay in flight.
        """
        if online == self.online:
            return
        self.online = online
        if online:
            return
        if not keep_in_flight:
            for entry in self._queue:
                entry.sent = False
            self._in_flight = 0
        if self.journal is not None and self._queue:
            self.journal.rewrite([e.beacon for e in self._queue])
            self._journaled = True

    def pending(self) -> list[Beacon]:
        return [e.beacon for e in self._queue]
