from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway.api.auth import CurrentAccount

router = APIRouter(tags=["metrics"])


@router.get("/metrics")
def metrics(request: Request, caller: CurrentAccount) -> Response:
    """Prometheus metrics, for an administrator's or the centre's bearer token (a scraper's
    `authorization` with `bearer_token`) or session."""
    caller.require("metrics")
    registry: CollectorRegistry = request.app.state.metrics
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
