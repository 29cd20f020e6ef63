"""The managed broker starts, serves MQTT on loopback and stops by PID."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from gateway.broker import BrokerAddress, BrokerError, BrokerNotInstalledError, ManagedBroker


def test_start_listen_stop(tmp_path: Path) -> None:
    broker = ManagedBroker(tmp_path)
    broker.start()
    pid = broker.pid
    assert pid is not None
    with socket.create_connection((broker.host, broker.port), timeout=1):
        pass
    broker.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_missing_mosquitto_names_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("gateway.broker.os.access", lambda *_: False)
    with pytest.raises(BrokerNotInstalledError, match="apt-get install -y mosquitto"):
        ManagedBroker(tmp_path).start()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1:1884", BrokerAddress("127.0.0.1", 1884)),
        ("mqtts://broker.local", BrokerAddress("broker.local", 8883, tls=True)),
        ("mqtt://[::1]:1883", BrokerAddress("::1", 1883)),
    ],
)
def test_parse_url(url: str, expected: BrokerAddress) -> None:
    assert BrokerAddress.parse(url) == expected


@pytest.mark.parametrize("url", ["http://x:1", "mqtt://", "mqtt://h:notaport", "h:1883"])
def test_parse_bad_url(url: str) -> None:
    with pytest.raises(BrokerError):
        BrokerAddress.parse(url)
