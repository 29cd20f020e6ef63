"""The live streams (/api/events, /api/tracking/stream) on a real HTTP server: a caller that
leaves ends its stream at once, even with no event to send, and the server stops with a stream
open (a stream that only ever sent noticed neither until its next event in scope)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from gateway.api import create_app
from gateway.broker import free_port
from gateway.service import GatewayService, ServiceConfig
from tests.gateway.signin import add_account

STREAMS = ["/api/events", "/api/tracking/stream"]


class Served:
    def __init__(self, tmp_path: Path) -> None:
        self.service = GatewayService(ServiceConfig(data_dir=tmp_path, device_poll_s=0.2))
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                create_app(self.service), host="127.0.0.1", port=self.port, log_level="warning"
            )
        )
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()))

    def token(self) -> str:
        name, password = add_account(self.service, "viewer")
        form = urllib.parse.urlencode({"username": name, "password": password}).encode()
        url = f"http://127.0.0.1:{self.port}/api/auth/token"
        with urllib.request.urlopen(urllib.request.Request(url, data=form), timeout=30) as r:
            return str(json.load(r)["access_token"])

    def stream(self, path: str) -> ClientConnection:
        headers = {"Authorization": f"Bearer {self.token()}"}
        return connect(f"ws://127.0.0.1:{self.port}{path}", additional_headers=headers)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    served = Served(tmp_path)
    served.thread.start()
    try:
        while not served.server.started:
            assert served.thread.is_alive(), "server died at start"
            time.sleep(0.05)
        yield served
    finally:
        served.server.should_exit = True
        served.thread.join(60)
        served.service.close()


def _until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


@pytest.mark.parametrize("path", STREAMS)
def test_a_stream_ends_when_its_caller_leaves(served: Served, path: str) -> None:
    hub = served.service.hub
    before = hub.subscriber_count
    with served.stream(path):
        _until(lambda: hub.subscriber_count == before + 1, "the stream did not subscribe")
    _until(lambda: hub.subscriber_count == before, "the stream outlived its caller")


@pytest.mark.parametrize("path", STREAMS)
def test_the_server_stops_with_a_stream_open(served: Served, path: str) -> None:
    hub = served.service.hub
    before = hub.subscriber_count
    with served.stream(path) as ws:
        _until(lambda: hub.subscriber_count == before + 1, "the stream did not subscribe")
        served.server.should_exit = True
        _until(lambda: not served.thread.is_alive(), "the server waited on the open stream")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=30)
    assert hub.subscriber_count == before
