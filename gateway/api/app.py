"""create_app(): routers, metrics registry and the lifespan that owns the gateway runner."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from prometheus_client import CollectorRegistry

from gateway.api.routes import devices, events, health, metrics, recordings, talkgroups, tracking
from gateway.metrics import GatewayCollector, LiveGauges, RecorderCollector
from gateway.service import GatewayService
from gateway.tracking.errors import TrackingStoreError
from gateway.tracking.metrics import TrackingCollector


def create_app(service: GatewayService) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service.running() as runner:
            registry = CollectorRegistry()

            def gauges() -> LiveGauges:
                return runner.gauges()

            registry.register(GatewayCollector(runner.counters, gauges))
            if service.recorder is not None:
                registry.register(RecorderCollector(service.recorder))
            if service.tracking is not None:
                registry.register(TrackingCollector(service.tracking))
            app.state.metrics = registry
            yield

    app = FastAPI(title="Xixin gateway", version="1", lifespan=lifespan)
    app.state.service = service
    for module in (health, devices, talkgroups, recordings, metrics, events, tracking):
        app.include_router(module.router)
    app.add_exception_handler(TrackingStoreError, tracking.tracking_unavailable)
    console = resources.files("gateway.console").joinpath("index.html").read_text("utf-8")

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(console)

    return app
