"""Store-and-forward beacon queue: order, window, acknowledgement, journal, bound."""

from __future__ import annotations

from pathlib import Path

from devices.beacons import BeaconJournal, BeaconQueue
from devices.session import Beacon


def fix(n: int) -> Beacon:
    return Beacon(ts=1_700_000_000_000 + n * 5000, lat=30.87, lon=120.13 + n * 1e-5)


def test_online_beacons_wait_for_puback_within_a_window() -> None:
    q = BeaconQueue(window=2)
    q.set_online(True)
    for n in range(3):
        q.take(fix(n), float(n))
    first = q.to_send()
    assert [b.ts for _, b in first] == [fix(0).ts, fix(1).ts]
    assert q.to_send() == [], "window full"
    q.acked(first[0][0])
    assert [b.ts for _, b in q.to_send()] == [fix(2).ts]
    assert len(q) == 2 and q.counters.acked == 1


def test_connection_loss_resends_in_flight_first_in_order(tmp_path: Path) -> None:
    journal = BeaconJournal(tmp_path / "T001.jsonl")
    q = BeaconQueue(journal=journal)
    q.set_online(True)
    q.take(fix(0), 0.0)
    q.take(fix(1), 1.0)
    sent = q.to_send()
    q.acked(sent[0][0])
    q.set_online(False)  # fix(1) was in flight: back to the queue, journaled
    for n in range(2, 5):
        q.take(fix(n), float(n))
    assert [b.ts for b in journal.load()] == [fix(n).ts for n in range(1, 5)]
    q.set_online(True)
    again = q.to_send()
    assert [b.ts for _, b in again] == [fix(n).ts for n in range(1, 5)]
    for seq, _ in again:
        q.acked(seq)
    assert len(q) == 0 and not journal.path.exists(), "journal removed once all acknowledged"
    assert q.counters.acked == 5 and q.counters.queued_offline == 3


def test_journal_survives_a_power_cycle(tmp_path: Path) -> None:
    path = tmp_path / "T001.jsonl"
    q = BeaconQueue(journal=BeaconJournal(path))
    for n in range(3):
        q.take(fix(n), float(n))
    with path.open("ab") as handle:
        handle.write(b'{"torn": ')  # a write cut by the power loss
    restored = BeaconQueue(journal=BeaconJournal(path))
    assert restored.counters.restored == 3
    restored.set_online(True)
    assert [b.ts for _, b in restored.to_send()] == [fix(n).ts for n in range(3)]


def test_bounded_queue_drops_the_oldest(tmp_path: Path) -> None:
    journal = BeaconJournal(tmp_path / "j.jsonl")
    q = BeaconQueue(capacity=3, journal=journal)
    for n in range(5):
        q.take(fix(n), float(n))
    assert [b.ts for b in q.pending()] == [fix(n).ts for n in (2, 3, 4)]
    assert [b.ts for b in journal.load()] == [fix(n).ts for n in (2, 3, 4)]
    assert q.counters.overflowed == 2


def test_refused_and_lost_beacons() -> None:
    q = BeaconQueue()
    q.set_online(True)
    q.take(fix(0), 0.0)
    q.take(fix(1), 0.0)
    (a, _), (b, _) = q.to_send()
    q.acked(a, ok=False)  # not authorised: never retried
    q.lost(b)
    assert q.counters.refused == 1 and q.in_flight == 0
    assert [s for s, _ in q.to_send()] == [b]
    q.acked(999)  # unknown sequence numbers are ignored
