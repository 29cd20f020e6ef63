"""Shared fixtures: a real mosquitto on a free loopback port, started and stopped by PID."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.broker import ManagedBroker


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
