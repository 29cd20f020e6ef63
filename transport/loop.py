"""The event loop every long-running process of Xixin runs on."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_event_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on uvloop when installed, else on asyncio's loop: this client's socket
    callbacks cost about half as much on uvloop (the relay, the ingest workers, a fleet)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
