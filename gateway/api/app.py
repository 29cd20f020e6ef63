"""create_app(): routers, metrics registry and the lifespan that owns the gateway runner."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from importlib import resources
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry

from gateway.api.auth import CurrentAccount
from gateway.api.console_settings import ConsoleSettings
from gateway.api.routes import (
    alarms,
    audit,
    auth,
    console,
    devices,
    events,
    health,
    incidents,
    metrics,
    recordings,
    talkgroups,
    tracking,
    voice,
)
from gateway.api.security import HttpSecurity, SecurityMiddleware
from gateway.api.services.access import ForbiddenError
from gateway.auth.throttle import LoginThrottle
from gateway.broker_stats import BrokerStatsCollector
from gateway.metrics import GatewayCollector, LiveGauges, RecorderCollector, ServiceCollector
from gateway.service import GatewayService
from gateway.tracking.errors import TrackingStoreError
from gateway.tracking.metrics import TrackingCollector
from gateway.voice.service import VoiceService

#: How deep a refused input is echoed in a 422; deeper parts are elided.
_ECHO_DEPTH: Final = 8


def _printable(value: Any, depth: int = 0) -> Any:
    """`value` as JSON can carry it: NaN/Infinity as text, lone surrogates escaped, depth cut."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict | list | tuple):
        if depth >= _ECHO_DEPTH:
            return "..."
        if isinstance(value, dict):
            return {_printable(k, depth + 1): _printable(v, depth + 1) for k, v in value.items()}
        return [_printable(v, depth + 1) for v in value]
    return value


async def _validation_failed(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, except that the echoed input cannot break it: a NaN or a lone surrogate in
    the input made rendering the refusal itself fail with a 500."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return JSONResponse({"detail": jsonable_encoder(_printable(errors))}, status_code=422)


async def _forbidden(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=403)


def create_app(
    service: GatewayService,
    security: HttpSecurity | None = None,
    console_settings: ConsoleSettings | None = None,
) -> FastAPI:
    """The API and console; `security`: allowed Host names, TLS, token lives (default:
    loopback names, plain HTTP); `console_settings`: the map tile server (default none)."""
    console_settings = console_settings or ConsoleSettings()
    security = security or HttpSecurity()
    if console_settings.image_origins != security.image_origins:
        security = replace(security, image_origins=console_settings.image_origins)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service.running() as runner:
            registry = CollectorRegistry()

            def gauges() -> LiveGauges:
                return runner.gauges()

            registry.register(GatewayCollector(runner.counters, gauges))
            registry.register(BrokerStatsCollector(runner.broker_stats))
            registry.register(ServiceCollector(service.writers, lambda: service.broker_restarts))
            if service.recorder is not None:
                registry.register(RecorderCollector(service.recorder))
            if service.tracking is not None:
                registry.register(TrackingCollector(service.tracking))
            app.state.metrics = registry
            app.state.voice = VoiceService(runner, service.describe, logger=service.log)
            try:
                yield
            finally:
                await app.state.voice.close()

    # The schema only for the signed in (below); Swagger UI at /docs (routes/console.py) is
    # served from the package, as the whole console is: no CDN, works offline.
    app = FastAPI(
        title="Xixin gateway",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.service = service
    app.state.security = security
    app.state.console = console_settings
    app.state.throttle = LoginThrottle(
        security.login_max_failures, security.login_window_s, security.login_lockout_s
    )
    app.state.ip_throttle = LoginThrottle(
        security.login_max_failures * 4, security.login_window_s, security.login_lockout_s
    )
    for module in (
        auth, health, devices, alarms, talkgroups, recordings, metrics, events, tracking, audit,
        voice,
    ):  # fmt: skip
        app.include_router(module.router)
    app.include_router(console.router)
    # Scripts, styles and vendored libraries only: no data (public, like the login page).
    static = resources.files("gateway.console").joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.include_router(incidents.router)
    app.add_exception_handler(incidents.IncidentError, incidents.incident_error)
    app.add_middleware(SecurityMiddleware, security=security)
    app.add_exception_handler(ForbiddenError, _forbidden)
    app.add_exception_handler(TrackingStoreError, tracking.tracking_unavailable)
    app.add_exception_handler(RequestValidationError, _validation_failed)
    console_page = resources.files("gateway.console").joinpath("index.html").read_text("utf-8")

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(caller: CurrentAccount) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(console_page)

    return app
