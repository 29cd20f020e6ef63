from __future__ import annotations

from fastapi import APIRouter

from gateway.api.deps import RunnerDep
from gateway.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/api/health")
async def health(runner: RunnerDep) -> Health:
    connected = runner.client.is_connected
    return Health(
        status="ok" if connected else "degraded",
        broker=runner.settings.broker.url,
        mqtt_connected=connected,
        devices=len(runner.control.directory.devices),
        devices_online=runner.gauges().devices_online,
    )
