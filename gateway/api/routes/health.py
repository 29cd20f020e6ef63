from __future__ import annotations

from fastapi import APIRouter

from gateway.api.deps import ViewDep
from gateway.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/api/health")
async def health(view: ViewDep) -> Health:
    return view.health()
