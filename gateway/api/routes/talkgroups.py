from __future__ import annotations

from fastapi import APIRouter, HTTPException

from gateway.api.deps import RunnerDep
from gateway.api.schemas import FloorOut, QueueEntry, TalkgroupOut
from gateway.floor import Floor

router = APIRouter(tags=["talkgroups", "floors"])


def _floor_out(floor: Floor) -> FloorOut:
    return FloorOut(
        key=floor.key,
        state=str(floor.state),
        holder=floor.holder,
        burst=floor.burst,
        priority=floor.priority.label if floor.priority is not None else None,
        queue=[QueueEntry(device=d, priority=p.label) for d, p in floor.queue()],
    )


@router.get("/api/talkgroups")
async def list_talkgroups(runner: RunnerDep) -> list[TalkgroupOut]:
    control = runner.control
    directory = control.directory
    result = []
    for tg, name in sorted(directory.talkgroups.items()):
        floor = control.floors.talkgroups[tg]
        result.append(
            TalkgroupOut(
                id=tg,
                name=name,
                members=len(directory.members(tg)),
                affiliated=sum(1 for tgs in control.affiliations.values() if tg in tgs),
                floor=str(floor.state),
                talker=floor.holder,
            )
        )
    return result


@router.get("/api/floors")
async def list_floors(runner: RunnerDep) -> list[FloorOut]:
    floors = runner.control.floors.floors()
    return [_floor_out(f) for f in floors]


@router.post("/api/floors/{key}/revoke")
async def revoke_floor(key: str, runner: RunnerDep) -> FloorOut:
    floor = runner.control.floors.get(key)
    if floor is None:
        raise HTTPException(404, f"no floor {key!r}")
    runner.revoke(key)
    return _floor_out(floor)
