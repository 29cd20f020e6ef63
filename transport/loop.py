"""The event loop every long-running process of Xixin runs on."""

from __future__ import annotations

import asyncio
import gc
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


def freeze_startup_heap() -> int:
    """Once a process has started (modules, the directory, the web app): collect, then move
    every object left out of the cyclic collector's reach; returns how many were moved.

    A full collection walks every tracked object. In the gateway's process that is ~140,000
    objects, most of them the web framework's and the ORM's, which live as long as the process:
    a pause of 80-120 ms on the loop the relay shares, whenever the control plane's garbage
    happens to trigger one (a storm of floor requests). Frozen, they are skipped; only what was
    made since is walked. A terminal's audio runs on its loop too: in the voice benchmark's
    terminals process (a talker, eight listeners) one such pause took 49 ms, and a listener
    whose playout came due meanwhile ran dry mid-word."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
