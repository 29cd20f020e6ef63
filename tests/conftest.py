"""Shared fixtures: a real mosquitto on a free loopback port and a private PostgreSQL cluster,
started and stopped by PID."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.broker import ManagedBroker
from xixin.pgcluster import PostgresCluster, PostgresUnavailable


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[ManagedBroker]:
    """An anonymous mosquitto (no auth); tests of auth build their own ManagedBroker.

    It also listens on a Unix socket, which the gateway uses as under `xixin up`."""
    broker = ManagedBroker(tmp_path / "broker", local_socket=True)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def private_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL server on a free loopback port, stopped by PID and removed after; the test
    is skipped where PostgreSQL is not installed."""
    try:
        cluster = PostgresCluster()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL is not installed: {exc}")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        cluster.remove()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """One PostgreSQL server for the session; tests create their own databases in it."""
    yield from private_cluster()
