"""The alarm queue: open (or all) alarms in the caller's scope; acknowledge; close."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query

from gateway.alarms.queue import AlarmError, AlarmStateError, UnknownAlarmError
from gateway.api.auth import CurrentAccount
from gateway.api.deps import RunnerDep, ServiceDep
from gateway.api.schemas import DB_INT_MAX, AlarmClose, AlarmOut
from gateway.api.services.alarms import AlarmsService
from gateway.store.records import NotDurableError

router = APIRouter(prefix="/api/alarms", tags=["alarms"])


def get_alarms(service: ServiceDep, runner: RunnerDep, caller: CurrentAccount) -> AlarmsService:
    names = {d.id: d.name for d in service.devices_seen}
    return AlarmsService(service.alarms, caller, service.audit, names.get)


AlarmsDep = Annotated[AlarmsService, Depends(get_alarms)]


@router.get("")
async def list_alarms(
    alarms: AlarmsDep,
    state: Literal["open", "all"] = "open",
    kind: Literal["sos", "low_battery", "offline_too_long", "left_grid", "no_movement"]
    | None = None,
    device: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[AlarmOut]:
    """Alarms newest first: `open` (unattended or acknowledged; the default) or `all`. Live
    changes: `alarm` events on /api/events."""
    return await alarms.find(state == "open", kind, device, limit)


async def _act(alarm_id: int, alarms: AlarmsService, close: AlarmClose | None) -> AlarmOut:
    if not 1 <= alarm_id <= DB_INT_MAX:
        raise HTTPException(404, f"no open alarm {alarm_id}")
    try:
        if close is None:
            return await alarms.acknowledge(alarm_id)
        return await alarms.close(alarm_id, close.outcome, close.note)
    except UnknownAlarmError as exc:
        raise HTTPException(404, str(exc)) from exc
    except AlarmStateError as exc:
        raise HTTPException(409, str(exc)) from exc
    except AlarmError as exc:
        raise HTTPException(422, str(exc)) from exc
    except NotDurableError as exc:
        raise HTTPException(503, str(exc)) from exc


@router.post("/{alarm_id}/ack")
async def acknowledge_alarm(alarm_id: int, alarms: AlarmsDep) -> AlarmOut:
    """unattended → acknowledged, by the caller, now (409 in another state)."""
    return await _act(alarm_id, alarms, None)


@router.post("/{alarm_id}/close")
async def close_alarm(alarm_id: int, body: AlarmClose, alarms: AlarmsDep) -> AlarmOut:
    """acknowledged → closed, `valid` or `false_alarm`, with a note (409 in another state)."""
    return await _act(alarm_id, alarms, body)
