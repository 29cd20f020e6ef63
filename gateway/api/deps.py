"""Typed dependencies: the service and its runner, owned by the app lifespan, and the services
routes go through (`gateway.api.services`), each limited to the signed-in caller's scope."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from gateway.api.auth import CurrentAccount
from gateway.api.services.gateway_view import GatewayView
from gateway.api.services.recordings import RecordingsService
from gateway.runner import GatewayRunner
from gateway.service import GatewayService


def get_service(request: Request) -> GatewayService:
    service: GatewayService = request.app.state.service
    return service


def get_runner(request: Request) -> GatewayRunner:
    runner: GatewayRunner | None = request.app.state.service.runner
    if runner is None:
        raise HTTPException(status_code=503, detail="gateway is not running")
    return runner


ServiceDep = Annotated[GatewayService, Depends(get_service)]
RunnerDep = Annotated[GatewayRunner, Depends(get_runner)]


def get_view(runner: RunnerDep, service: ServiceDep, caller: CurrentAccount) -> GatewayView:
    return GatewayView(
        runner,
        problems=service.problems,
        broker_restarts=lambda: service.broker_restarts,
        caller=caller,
        audit=service.audit,
        battery=service.tracking.battery if service.tracking is not None else lambda d: None,
    )


ViewDep = Annotated[GatewayView, Depends(get_view)]


def get_recordings(service: ServiceDep, view: ViewDep, caller: CurrentAccount) -> RecordingsService:
    return RecordingsService(
        service.engine,
        service.recordings_dir,
        caller,
        view.unit_of,
        lambda tg: service.incidents.placement(tg, stored=True),
    )


RecordingsDep = Annotated[RecordingsService, Depends(get_recordings)]
