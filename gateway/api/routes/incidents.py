"""Incidents: intake, the board, history, transitions, nearest officers, timelines, reports.

- ``GET /api/incidents?state=current|open|all`` — current (every open one, then the 100 most
  recently resolved or closed of the last day: the board) or open only, from memory; ``all``
  from the database (``since``/``until`` on the report time, ``category``, ``limit``).
  Filters ``tier`` and ``category`` apply to all.
- ``POST /api/incidents`` — a dispatcher's intake (201).
- ``POST /api/incidents/from-alarm/{alarm}`` — an incident made of an alarm (201).
- ``GET /api/incidents/{id}``, ``GET /api/incidents/{id}/timeline``.
- ``POST /api/incidents/{id}/{action}`` — accept, assign, unassign, resolve, close, reopen,
  escalate, deescalate, note: 409 when the state does not allow it, 422 on bad input.
- ``GET /api/incidents/{id}/suggestions?k=5`` — nearest available officers.
- ``GET /api/incidents/reports?since=&until=&period=day|week|month|all`` (``format=csv``).

Unknown and out-of-scope incidents are 404; seen but handled at another unit, 403.
"""

from __future__ import annotations

import time
from typing import Annotated, Final, Literal

import msgspec
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse

from gateway.api.auth import CurrentAccount
from gateway.api.incident_schemas import (
    ActionIn,
    CategoryOut,
    FromAlarmIn,
    IncidentIn,
    IncidentOut,
    ReportRowOut,
    SuggestionOut,
    TransitionOut,
)
from gateway.api.services.incidents_access import IncidentAccess
from gateway.incidents.errors import (
    IncidentError,
    IncidentInputError,
    TransitionError,
    UnknownIncidentError,
)
from gateway.incidents.model import Incident, Place
from gateway.incidents.reports import report_csv
from gateway.incidents.store import HistoryQuery
from gateway.service import GatewayService

router = APIRouter(prefix="/api/incidents", tags=["incidents"])
JSON: Final = "application/json"
encode_json = msgspec.json.Encoder().encode

Action = Literal[
    "accept", "assign", "unassign", "resolve", "close", "reopen", "escalate", "deescalate", "note"
]
Time = Annotated[float | None, Query(description="epoch seconds", allow_inf_nan=False)]
IncidentId = Annotated[int, Query(ge=1, le=2**31 - 1)]


def get_access(request: Request, caller: CurrentAccount) -> IncidentAccess:
    service: GatewayService = request.app.state.service
    runner = service.runner

    def unit_of(device: str) -> str | None:
        info = runner.control.directory.get(device) if runner is not None else None
        return info.unit if info is not None else service.incidents.units.get(device)

    return IncidentAccess(service.incidents, caller, unit_of)


AccessDep = Annotated[IncidentAccess, Depends(get_access)]


def incident_error(request: Request, exc: Exception) -> JSONResponse:
    """TransitionError 409, UnknownIncidentError 404, other input errors 422 (app handler)."""
    status = 422
    if isinstance(exc, TransitionError):
        status = 409
    elif isinstance(exc, UnknownIncidentError):
        status = 404
    return JSONResponse({"detail": str(exc)}, status_code=status)


def _out(access: IncidentAccess, incident: Incident) -> IncidentOut:
    return IncidentOut.model_validate(access.incidents.view(incident))


@router.get("/categories")
async def categories(access: AccessDep) -> list[CategoryOut]:
    access.caller.require("read")
    return [
        CategoryOut(
            id=c.id,
            name=c.name,
            name_zh=c.name_zh,
            tier=c.tier,
            accept_within_s=c.accept_within_s,
            resolve_within_s=c.resolve_within_s,
            on_overdue=c.on_overdue,
        )
        for c in access.incidents.categories.values()
    ]


@router.get("", response_model=list[IncidentOut])
async def list_incidents(
    access: AccessDep,
    state: Literal["current", "open", "all"] = "current",
    tier: Literal["grid", "area", "centre"] | None = None,
    category: str | None = None,
    since: Time = None,
    until: Time = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> Response:
    if state == "all":
        found = await access.history(HistoryQuery(since, until, None, category, None, limit))
    else:
        found = access.board(include_closed=state == "current")
    found = [
        i for i in found
        if (tier is None or i.tier == tier) and (category is None or i.category == category)
    ][:limit]  # fmt: skip
    # The service's views are IncidentOut already (tested); sent as they are, the board's
    # hundreds of incidents skip a second validation.
    return Response(encode_json([access.incidents.view(i) for i in found]), media_type=JSON)


@router.post("", status_code=201)
async def create_incident(body: IncidentIn, access: AccessDep) -> IncidentOut:
    position = body.position
    place = Place(
        body.grid, body.area, position.lat if position else None, position.lon if position else None
    )
    return _out(access, access.report(body.category, body.text, place))


@router.post("/from-alarm/{alarm_id}", status_code=201)
async def from_alarm(alarm_id: int, body: FromAlarmIn, access: AccessDep) -> IncidentOut:
    try:
        incident = access.from_alarm(alarm_id, body.category, body.text)
    except LookupError as exc:
        raise HTTPException(503, str(exc)) from exc
    return _out(access, incident)


@router.get("/reports")
async def reports(
    access: AccessDep,
    since: Time = None,
    until: Time = None,
    period: Literal["day", "week", "month", "all"] = "day",
    format: Literal["json", "csv"] = "json",
) -> Response:
    end = until if until is not None else time.time()
    start = since if since is not None else end - 30 * 86400
    rows = await access.report_rows(start, end, period)
    if format == "csv":
        return Response(
            report_csv(rows),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": 'attachment; filename="incidents-report.csv"'},
        )
    body = [ReportRowOut.model_validate(row, from_attributes=True) for row in rows]
    return JSONResponse([row.model_dump() for row in body])


@router.get("/{incident_id}")
async def get_incident(incident_id: int, access: AccessDep) -> IncidentOut:
    return _out(access, access.get(incident_id))


@router.get("/{incident_id}/timeline")
async def timeline(incident_id: int, access: AccessDep) -> list[TransitionOut]:
    return [TransitionOut.model_validate(t) for t in await access.timeline(incident_id)]


@router.get("/{incident_id}/suggestions")
async def suggestions(
    incident_id: int, access: AccessDep, k: Annotated[int, Query(ge=1, le=50)] = 5
) -> list[SuggestionOut]:
    return [
        SuggestionOut.model_validate(s, from_attributes=True)
        for s in access.suggest(incident_id, k)
    ]


@router.post("/{incident_id}/{action}")
async def act(incident_id: int, action: Action, access: AccessDep, body: ActionIn) -> IncidentOut:
    args: dict[str, object] = {"note": body.note, "reason": body.reason}
    if action == "assign":
        args["officers"] = body.officers
    if action == "unassign":
        if body.officer is None:
            raise IncidentInputError("'officer' is required")
        args["officer"] = body.officer
    return _out(access, access.act(incident_id, action, args))


__all__ = ["IncidentError", "incident_error", "router"]
