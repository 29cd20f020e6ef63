from __future__ import annotations

from fastapi import APIRouter, HTTPException

from gateway.api.deps import ViewDep
from gateway.api.schemas import FloorOut, TalkgroupOut

router = APIRouter(tags=["talkgroups", "floors"])


@router.get("/api/talkgroups")
async def list_talkgroups(view: ViewDep) -> list[TalkgroupOut]:
    return view.talkgroups()


@router.get("/api/floors")
async def list_floors(view: ViewDep) -> list[FloorOut]:
    return view.floors()


@router.post("/api/floors/{key}/revoke")
async def revoke_floor(key: str, view: ViewDep) -> FloorOut:
    floor = view.revoke(key)
    if floor is None:
        raise HTTPException(404, f"no floor {key!r}")
    return floor
