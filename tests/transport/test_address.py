"""Broker URLs: mqtt://host:port and mqtts://host:port, nothing else."""

from __future__ import annotations

import pytest

from transport.address import BrokerAddress
from transport.errors import BrokerUrlError


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
    with pytest.raises(BrokerUrlError):
        BrokerAddress.parse(url)
