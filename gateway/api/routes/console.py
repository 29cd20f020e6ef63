"""What the console page needs besides the resources' own routes: the organisation as a base
map, its settings, and the API's documentation page (Swagger UI served from here, not a CDN)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.api.auth import CurrentAccount, OptionalAccount
from gateway.api.console_settings import ConsoleSettings
from gateway.api.deps import ServiceDep
from gateway.api.services.org_map import org_geojson

router = APIRouter(tags=["console"])

#: Swagger UI reads the schema (signed-in) from /openapi.json; its start-up is in docs.js (the
#: page's policy allows no inline script beyond the console's own).
DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Xixin gateway API</title>
<link rel="stylesheet" href="/static/vendor/swagger-ui/swagger-ui.css">
<link rel="stylesheet" href="/static/console.css">
</head>
<body class="docs">
<div id="swagger-ui"></div>
<script src="/static/vendor/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script>
</body>
</html>
"""


@router.get("/api/org")
async def org_map(service: ServiceDep, caller: CurrentAccount) -> dict[str, Any]:
    """GeoJSON FeatureCollection of the grids in the caller's scope (Polygon, kind "grid") and
    their areas' outlines (MultiLineString, kind "area"); properties: id, name, name_zh and the
    label point `label` [lon, lat]."""
    return org_geojson(service.org, caller.scope)


@router.get("/api/console/config")
async def console_config(request: Request, caller: CurrentAccount) -> dict[str, Any]:
    """The console's site settings: `map_tiles` (a tile URL template or null: polygons only)."""
    settings: ConsoleSettings = request.app.state.console
    return {"map_tiles": settings.map_tiles, "map_attribution": settings.map_attribution}


@router.get("/docs", include_in_schema=False)
async def docs(caller: OptionalAccount) -> Response:
    if caller is None:
        return RedirectResponse("/login", status_code=303)
    return HTMLResponse(DOCS_PAGE)
