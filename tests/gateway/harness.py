"""Run a real GatewayRunner on its own event-loop thread against a real broker, for tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

from gateway.runner import GatewayRunner

T = TypeVar("T")


class GatewayThread:
    def __init__(self, runner: GatewayRunner) -> None:
        self.runner = runner
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="gateway", daemon=True)
        self.error: BaseException | None = None

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            waiter = asyncio.create_task(self.runner.ready.wait())
            # A cancelled waiter means the runner failed: _main sets error, then _ready.
            waiter.add_done_callback(lambda t: None if t.cancelled() else self._ready.set())
            await self.runner.run()

        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced to the test by start()/stop()
            self.error = exc
            self._ready.set()

    def start(self, timeout: float = 10.0) -> GatewayThread:
        self._thread.start()
        if not self._ready.wait(timeout) or self.error is not None:
            raise RuntimeError(f"gateway did not start: {self.error!r}")
        return self

    def call(self, fn: Callable[[], T], timeout: float = 5.0) -> T:
        """Run fn on the gateway's loop (its state is single-threaded) and return its result."""
        assert self._loop is not None

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def stop(self) -> None:
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.runner.stop)
            self._thread.join(10)
        assert not self._thread.is_alive(), "gateway thread did not stop"
