"""A full gateway service (managed mosquitto, SQLite, recorder) with its API in a TestClient,
and terminals provisioned on it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from codec.opus import Pcm16
from devices.client import TerminalClient
from gateway.api import create_app
from gateway.service import GatewayService, ServiceConfig
from tests.codec.speech import SENTENCES, speak
from tests.gateway.signin import client as signin_client

TerminalMaker = Callable[..., TerminalClient]


@pytest.fixture
def voice_api(tmp_path: Path) -> Iterator[tuple[TestClient, GatewayService]]:
    service = GatewayService(ServiceConfig(data_dir=tmp_path / "data", device_poll_s=0.2))
    try:
        with signin_client(create_app(service)) as http:
            yield http, service
    finally:
        service.close()


def wait_known(service: GatewayService, device: str, timeout: float = 10.0) -> None:
    """Until the running gateway's directory has `device` (it polls the database)."""
    pause = threading.Event()
    for _ in range(int(timeout / 0.05)):
        runner = service.runner
        if runner is not None and runner.control.directory.get(device) is not None:
            return
        pause.wait(0.05)
    raise AssertionError(f"{device} not in the gateway's directory within {timeout} s")


@pytest.fixture
def terminals(
    voice_api: tuple[TestClient, GatewayService],
) -> Iterator[TerminalMaker]:
    _, service = voice_api
    made: list[TerminalClient] = []

    def make(
        device: str, unit: str, talkgroups: list[str], role: str = "officer"
    ) -> TerminalClient:
        _, secret = service.registry.add(device, unit, role, f"name of {device}")
        wait_known(service, device)
        assert service.broker is not None
        terminal = TerminalClient(device, secret, service.broker.host, service.broker.port)
        terminal.connect()
        made.append(terminal)
        terminal.affiliate(talkgroups)
        return terminal

    yield make
    for terminal in made:
        terminal.disconnect()


@pytest.fixture(scope="session")
def speech() -> Pcm16:
    """About 5 s of English speech at 16 kHz."""
    pcm = speak("en", SENTENCES["en"])
    assert len(pcm) > 3 * 16000 and np.abs(pcm).max() > 1000
    return pcm
