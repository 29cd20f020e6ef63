from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from gateway.api.auth import OptionalAccount
from gateway.api.deps import RunnerDep, ServiceDep
from gateway.api.services.gateway_view import GatewayView

router = APIRouter(tags=["health"])


@router.get("/api/health")
async def health(runner: RunnerDep, service: ServiceDep, caller: OptionalAccount) -> Any:
    """Signed in: the whole health report. Anonymous (load balancers, `systemctl` probes): only
    `status` and `mqtt_connected` — no broker address, device counts or problem texts, which
    would tell a stranger on the network what is there and what is broken."""
    view = GatewayView(
        runner, problems=service.problems, broker_restarts=lambda: service.broker_restarts,
        caller=caller,
    )  # fmt: skip
    report = view.health()
    if caller is None:
        return {"status": report.status, "mqtt_connected": report.mqtt_connected}
    if not caller.scope.may("read"):
        raise HTTPException(403, "not allowed")
    return report
