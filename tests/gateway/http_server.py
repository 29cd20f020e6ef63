"""A gateway service's HTTP app served by uvicorn on a free loopback port, in a thread, as
`xixin up` serves it: for tests that need a real server (browsers, real WebSocket clients)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from gateway.api import create_app
from gateway.broker import free_port
from gateway.service import GatewayService


@dataclass
class ServedApp:
    url: str
    port: int
    server: uvicorn.Server
    thread: threading.Thread


@contextmanager
def serving(service: GatewayService) -> Iterator[ServedApp]:
    """Serve `service` until the block ends, then stop the server and close the service. That
    the server stopped is asserted last: an open connection it could not end would have left
    the gateway running."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    try:
        thread.start()
        while not server.started:
            assert thread.is_alive(), "the HTTP server died at start"
            threading.Event().wait(0.05)
        yield ServedApp(f"http://127.0.0.1:{port}", port, server, thread)
    finally:
        server.should_exit = True
        if thread.is_alive():
            thread.join(60)
        service.close()
        assert not thread.is_alive(), "the HTTP server did not stop"
