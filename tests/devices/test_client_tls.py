"""Both terminal clients over TLS to the managed broker, trusting the site's CA (protocol §8.3)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.aio_client import AsyncTerminalClient
from devices.client import TerminalClient
from devices.tls import TlsSetupError, client_tls_context
from gateway.broker import Listener, ManagedBroker, TlsFiles
from gateway.certs import ServerPki, init_pki
from transport.errors import TlsVerificationError


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[ManagedBroker, ServerPki]]:
    pki = init_pki(tmp_path / "tls", ["localhost", "127.0.0.1"])
    broker = ManagedBroker(
        tmp_path / "broker",
        listeners=[Listener("127.0.0.1", 0, TlsFiles(pki.server_cert, pki.server_key))],
    )
    broker.start()
    try:
        yield broker, pki
    finally:
        broker.stop()


def test_the_asyncio_client_connects_over_tls(
    tls_broker: tuple[ManagedBroker, ServerPki], tmp_path: Path
) -> None:
    broker, pki = tls_broker

    async def main() -> None:
        client = AsyncTerminalClient(
            "T001", None, "localhost", broker.port, tls=client_tls_context(pki.ca_cert)
        )
        await client.start()
        await client.stop()
        other = init_pki(tmp_path / "other", ["localhost"])
        stranger = AsyncTerminalClient(
            "T002", None, "localhost", broker.port, tls=client_tls_context(other.ca_cert)
        )
        with pytest.raises(TlsVerificationError, match="TLS verification of localhost"):
            await stranger.start(timeout=10)

    asyncio.run(main())


def test_the_paho_client_connects_over_tls(tls_broker: tuple[ManagedBroker, ServerPki]) -> None:
    broker, pki = tls_broker
    client = TerminalClient(
        "T001", None, "localhost", broker.port, tls=client_tls_context(pki.ca_cert)
    )
    client.connect()
    client.disconnect()


def test_a_missing_ca_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TlsSetupError, match="cannot set up TLS"):
        client_tls_context(tmp_path / "missing.pem")
