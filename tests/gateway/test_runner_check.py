"""Before anything serves, `xixin up` checks the broker once with the gateway's account."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.broker import BrokerUnavailableError, ManagedBroker, free_port
from gateway.broker_auth import write_password_file
from gateway.credentials import hash_secret
from gateway.directory import build_directory
from gateway.runner import GatewayRunner, GatewaySettings
from protocol.org import default_org
from transport.address import BrokerAddress


def runner(address: BrokerAddress, password: str | None = None) -> GatewayRunner:
    settings = GatewaySettings(
        address, username="xixin-gateway" if password else None, password=password
    )
    return GatewayRunner(settings, build_directory(default_org(), []))


def test_a_broker_that_is_not_there_is_one_clear_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    address = BrokerAddress("127.0.0.1", free_port())
    with pytest.raises(BrokerUnavailableError) as caught:
        asyncio.run(runner(address).check_broker(timeout=1.0))
    assert str(caught.value) == (
        f"cannot reach the broker at {address.url} within 1 s: Connection refused"
    )
    waiting = [r for r in caplog.records if "waiting up to 1 s" in r.getMessage()]
    assert len(waiting) == 1  # said once while it retried, not once per attempt


def test_the_gateway_account_is_checked_against_the_real_broker(tmp_path: Path) -> None:
    passwords = tmp_path / "passwords"
    write_password_file(passwords, [("xixin-gateway", hash_secret("right-secret"))])
    broker = ManagedBroker(tmp_path / "broker", password_file=passwords)
    broker.start()
    try:
        with pytest.raises(
            BrokerUnavailableError,
            match=r"refused the gateway's account \(NOT_AUTHORIZED\); check --gateway-user",
        ):
            asyncio.run(runner(broker.address, "wrong-secret").check_broker(timeout=5.0))
        asyncio.run(runner(broker.address, "right-secret").check_broker(timeout=5.0))
    finally:
        broker.stop()
