"""A managed broker + gateway for simulations and scenarios.

:class:`ManagedEnvironment` runs what `xixin up` runs (minus HTTP) for the simulation: a temporary
data directory, the device registry with the simulated terminals provisioned through it (real
secrets, the real broker password file and ACL), the managed mosquitto and the gateway on its own
thread. It hands the simulator a :class:`firmware_sim.deployment.Deployment`, nothing more.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from firmware_sim.deployment import (
    SECRETS_FILE,
    Deployment,
    DeviceSpec,
    raise_fd_limit,
)
from firmware_sim.errors import EnvironmentError_
from gateway.errors import GatewayError
from gateway.floor import FloorConfig
from gateway.runner import GatewayRunner
from gateway.service import GatewayService, ServiceConfig
from gateway.store.errors import StoreError, UnknownDeviceError
from gateway.store.registry import NewDevice
from xixin.options import load_org_source, make_data_dir, org_file

log = logging.getLogger(__name__)
T = TypeVar("T")


class ManagedEnvironment:
    """Broker + gateway for a simulation, in a temporary (or given) data directory."""

    def __init__(
        self,
        org: str = "longxi",
        data_dir: Path | None = None,
        floor: FloorConfig | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.log = logger or log
        self._own_dir = data_dir is None
        # A given directory may not exist yet: made 0700, it holds the terminals' secrets.
        self.data_dir = (
            make_data_dir(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="xixin-sim-"))
        )
        self.org = load_org_source(org)
        org_path = self.org_path = org_file(org, self.data_dir)
        raise_fd_limit()
        self.service = GatewayService(
            ServiceConfig(data_dir=self.data_dir, org_path=org_path, floor=floor or FloorConfig()),
            logger=self.log,
        )
        self.deployment: Deployment | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self.error: BaseException | None = None

    @property
    def runner(self) -> GatewayRunner:
        assert self.service.runner is not None
        return self.service.runner

    def provision(self, devices: list[tuple[str, str, str]]) -> dict[str, DeviceSpec]:
        """Add the devices (id, unit, role) through the registry; returns them with secrets.

        In a reused data directory, devices provisioned before keep their secrets (from the
        secrets file) or get a new one.
        """
        registry = self.service.migrate()
        known: dict[str, DeviceSpec] = {}
        previous = self.data_dir / SECRETS_FILE
        if previous.exists():
            known = Deployment.load(previous).devices
        specs: dict[str, DeviceSpec] = {}
        started = time.monotonic()
        new: list[NewDevice] = []
        try:
            for device_id, unit, role in devices:
                try:
                    device = registry.get(device_id)
                except UnknownDeviceError:
                    new.append(NewDevice(device_id, unit, role, None))
                    continue
                old = known.get(device_id)
                secret = old.secret if old and old.secret else registry.rotate(device_id)
                specs[device_id] = DeviceSpec(device_id, device.unit, device.role, secret)
            # In one transaction, and one log line, not one per device.
            for added, secret in registry.add_many(new):
                specs[added.id] = DeviceSpec(added.id, added.unit, added.role, secret)
        except (StoreError, GatewayError) as exc:
            raise EnvironmentError_(f"provisioning failed: {exc}") from exc
        self.log.info("provisioned %d devices in %.1f s", len(specs), time.monotonic() - started)
        return specs

    def start(self, devices: list[tuple[str, str, str]], timeout: float = 30.0) -> Deployment:
        specs = self.provision(devices)
        try:
            self.service.prepare()
        except (GatewayError, OSError) as exc:
            raise EnvironmentError_(f"cannot start the broker: {exc}") from exc
        self._thread = threading.Thread(target=self._main, name="sim-gateway", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self.error is not None:
            self.stop()
            raise EnvironmentError_(f"the gateway did not start: {self.error!r}")
        address = self.runner.settings.broker
        self.deployment = Deployment(address.host, address.port, specs)
        self.deployment.save(self.data_dir / SECRETS_FILE)
        return self.deployment

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            async with self.service.running():
                self._ready.set()
                await self._stop.wait()

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by start()/stop()
            self.error = exc
            self._ready.set()

    def call(self, fn: Callable[[], T], timeout: float = 5.0) -> T:
        """Run `fn` on the gateway's event loop (its state is single-threaded)."""
        assert self._loop is not None

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def counters(self) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            c = self.runner.counters
            return {
                "grants": c.floor["grant"],
                "relayed": c.relayed,
                "dropped": sum(c.dropped.values()),
                "online": self.runner.gauges().devices_online,
            }

        return self.call(read)

    def restart_broker(self, down_s: float = 1.0) -> None:
        """Stop the managed mosquitto, wait, start it again on the same port (blocking)."""
        broker = self.service.broker
        if broker is None:
            raise EnvironmentError_("only a managed broker can be restarted")
        broker.stop()
        time.sleep(down_s)
        broker.start()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(15)
        self.service.close()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
