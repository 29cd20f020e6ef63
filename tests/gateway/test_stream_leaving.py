"""The live streams (/api/events, /api/tracking/stream) on a real HTTP server: a caller that
leaves ends its stream at once, even with no event to send, and the server stops with a stream
open (a stream that only ever sent noticed neither until its next event in scope)."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from gateway.service import GatewayService, ServiceConfig
from tests.gateway.http_server import ServedApp, serving
from tests.gateway.signin import add_account

STREAMS = ["/api/events", "/api/tracking/stream"]


class Served:
    def __init__(self, service: GatewayService, app: ServedApp) -> None:
        self.service = service
        self.app = app

    def token(self) -> str:
        name, password = add_account(self.service, "viewer")
        form = urllib.parse.urlencode({"username": name, "password": password}).encode()
        url = f"{self.app.url}/api/auth/token"
        with urllib.request.urlopen(urllib.request.Request(url, data=form), timeout=30) as r:
            return str(json.load(r)["access_token"])

    def stream(self, path: str) -> ClientConnection:
        headers = {"Authorization": f"Bearer {self.token()}"}
        return connect(f"ws://127.0.0.1:{self.app.port}{path}", additional_headers=headers)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    service = GatewayService(ServiceConfig(data_dir=tmp_path, device_poll_s=0.2))
    with serving(service) as app:
        yield Served(service, app)


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
        served.app.server.should_exit = True
        _until(lambda: not served.app.thread.is_alive(), "the server waited on the open stream")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=30)
    assert hub.subscriber_count == before
