"""Fixtures for gateway tests: a gateway on a real mosquitto and scripted terminals."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from devices.client import TerminalClient
from gateway.api import create_app
from gateway.broker import ManagedBroker
from gateway.directory import Directory, build_directory
from gateway.floor import FloorConfig
from gateway.runner import GatewayRunner, GatewaySettings
from gateway.service import GatewayService, ServiceConfig
from protocol.org import default_org
from tests.gateway.harness import GatewayThread
from tests.gateway.signin import client as signin_client
from tests.gateway.signin import sign_in

# (id, unit, role, enabled)
TEST_DEVICES = [
    ("T001", "grid-01", "officer", True),
    ("T002", "grid-01", "officer", True),
    ("T003", "grid-01", "guard", True),
    ("T004", "grid-02", "officer", True),
    ("D001", "centre", "dispatcher", True),
    ("X001", "grid-01", "officer", False),
]


def make_directory() -> Directory:
    return build_directory(default_org(), TEST_DEVICES)


GatewayFactory = Callable[..., GatewayThread]
TerminalFactory = Callable[..., TerminalClient]


@pytest.fixture
def start_gateway(mosquitto: ManagedBroker) -> Iterator[GatewayFactory]:
    started: list[GatewayThread] = []

    def start(floor: FloorConfig | None = None, *, tcp: bool = False) -> GatewayThread:
        """The gateway on the broker's Unix socket as under `xixin up`; `tcp` as on an external
        broker. Terminals always use TCP."""
        address = mosquitto.address if tcp else mosquitto.local_address
        assert tcp or address.unix_path is not None
        settings = GatewaySettings(broker=address, floor=floor or FloorConfig())
        thread = GatewayThread(GatewayRunner(settings, make_directory())).start()
        started.append(thread)
        return thread

    yield start
    for thread in started:
        thread.stop()


@pytest.fixture
def terminal(mosquitto: ManagedBroker) -> Iterator[TerminalFactory]:
    clients: list[TerminalClient] = []

    def make(
        device_id: str, talkgroups: list[str] | None = None, **kwargs: object
    ) -> TerminalClient:
        client = TerminalClient(device_id, None, mosquitto.host, mosquitto.port, **kwargs)  # type: ignore[arg-type]
        client.connect()
        clients.append(client)
        if talkgroups:
            client.affiliate(talkgroups)
        return client

    yield make
    for client in clients:
        try:
            client.disconnect()
        except Exception:
            client.drop()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, GatewayService]]:
    """The HTTP API on a full service (managed broker, SQLite, recorder) in tmp_path, signed in
    as an administrator."""
    service = GatewayService(ServiceConfig(data_dir=tmp_path, device_poll_s=0.2))
    try:
        with signin_client(create_app(service)) as client:
            sign_in(client, service, "admin")
            yield client, service
    finally:
        service.close()
