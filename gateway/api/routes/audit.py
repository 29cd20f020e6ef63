"""The audit trail for administrators and the centre: query and CSV export."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from gateway.api.auth import CurrentAccount
from gateway.auth.audit import AuditQuery, audit_csv, find_audit
from gateway.service import GatewayService

router = APIRouter(prefix="/api", tags=["audit"])

Since = Annotated[float | None, Query(description="epoch seconds", allow_inf_nan=False)]


async def _find(
    request: Request, caller: CurrentAccount, where: AuditQuery
) -> list[dict[str, Any]]:
    caller.require("audit")
    service: GatewayService = request.app.state.service
    return await asyncio.to_thread(find_audit, service.engine, where)


@router.get("/audit")
async def list_audit(
    request: Request,
    caller: CurrentAccount,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: Since = None,
    until: Since = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[dict[str, Any]]:
    """Audit rows, newest first."""
    return await _find(request, caller, AuditQuery(actor, action, target, since, until, limit))


@router.get("/audit.csv")
async def audit_as_csv(
    request: Request,
    caller: CurrentAccount,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: Since = None,
    until: Since = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> Response:
    rows = await _find(request, caller, AuditQuery(actor, action, target, since, until, limit))
    return Response(audit_csv(rows), media_type="text/csv; charset=utf-8")
