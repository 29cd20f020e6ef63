"""The broker's `$SYS` drop counter, read as an alarm (sans-I/O, a fake clock)."""

from __future__ import annotations

from gateway.broker_stats import ALARM_S, DROPPED_TOPIC, STORED_BYTES_TOPIC, BrokerStats


def test_drops_count_from_the_first_sight_and_raise_an_alarm_for_a_while() -> None:
    stats = BrokerStats()
    assert stats.on_message(DROPPED_TOPIC, b"7", 0.0)  # drops before we watched: not ours
    assert stats.dropped_total == 0 and stats.problem(0.0) is None
    stats.on_message(DROPPED_TOPIC, b"7", 1.0)
    assert stats.problem(1.0) is None
    stats.on_message(DROPPED_TOPIC, b"10", 2.0)
    assert stats.dropped_total == 3
    problem = stats.problem(3.0)
    assert problem is not None and "dropped 3 messages" in problem
    assert stats.problem(2.0 + ALARM_S + 1) is None


def test_a_broker_restart_counts_from_zero_again() -> None:
    stats = BrokerStats()
    stats.on_message(DROPPED_TOPIC, b"5", 0.0)
    stats.on_message(DROPPED_TOPIC, b"2", 1.0)  # restarted, then dropped 2
    assert stats.dropped_total == 2


def test_stored_bytes_and_foreign_or_bad_payloads() -> None:
    stats = BrokerStats()
    assert stats.on_message(STORED_BYTES_TOPIC, b"4096", 0.0) and stats.stored_bytes == 4096
    assert stats.on_message(DROPPED_TOPIC, b"not a number", 0.0)
    assert not stats.on_message("$SYS/broker/uptime", b"12", 0.0)
    assert stats.dropped_total == 0
