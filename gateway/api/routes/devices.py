from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from gateway.api.deps import ServiceDep, ViewDep
from gateway.api.schemas import CommandIn, CommandOut, DeviceCreate, DeviceOut, DeviceSecret
from gateway.command_store import device_commands
from gateway.store.errors import DeviceExistsError, InvalidDeviceError, UnknownDeviceError
from gateway.store.records import NotDurableError
from gateway.store.registry import Device
from protocol.control import ControlError

router = APIRouter(prefix="/api/devices", tags=["devices"])


# Handlers are `async def` on purpose: gateway state belongs to the event loop, so they must not
# run on FastAPI's thread pool; blocking database work goes to a worker thread instead.


@router.get("")
async def list_devices(service: ServiceDep, view: ViewDep) -> list[DeviceOut]:
    """The devices in the caller's scope."""
    return view.visible(await asyncio.to_thread(service.registry.list))


async def _get(service: ServiceDep, device_id: str) -> Device:
    try:
        return await asyncio.to_thread(service.registry.get, device_id)
    except UnknownDeviceError as exc:
        raise HTTPException(404, str(exc)) from exc


@router.get("/{device_id}")
async def get_device(device_id: str, service: ServiceDep, view: ViewDep) -> DeviceOut:
    device = await _get(service, device_id)
    view.check_device(device)
    return view.device(device)


@router.post("", status_code=201)
async def add_device(body: DeviceCreate, service: ServiceDep, view: ViewDep) -> DeviceSecret:
    view.check_provision(body.id, body.unit, "add")
    try:
        device, secret = await asyncio.to_thread(
            service.registry.add, body.id, body.unit, body.role, body.name
        )
    except DeviceExistsError as exc:
        raise HTTPException(409, str(exc)) from exc
    except InvalidDeviceError as exc:
        raise HTTPException(422, str(exc)) from exc
    await service.devices_changed()
    view.provisioned(device.id, "add", {"unit": device.unit, "role": device.role})
    return DeviceSecret(device=view.device(device), secret=secret)


async def _change(device_id: str, service: ServiceDep, view: ViewDep, action: str) -> Device:
    device = await _get(service, device_id)
    view.check_provision(device_id, device.unit, action)
    try:
        await asyncio.to_thread(getattr(service.registry, action), device_id)
    except UnknownDeviceError as exc:
        raise HTTPException(404, str(exc)) from exc
    await service.devices_changed()
    view.provisioned(device_id, action, {})
    return await _get(service, device_id)


@router.post("/{device_id}/disable")
async def disable_device(device_id: str, service: ServiceDep, view: ViewDep) -> DeviceOut:
    return view.device(await _change(device_id, service, view, "disable"))


@router.post("/{device_id}/enable")
async def enable_device(device_id: str, service: ServiceDep, view: ViewDep) -> DeviceOut:
    return view.device(await _change(device_id, service, view, "enable"))


@router.post("/{device_id}/rotate")
async def rotate_secret(device_id: str, service: ServiceDep, view: ViewDep) -> DeviceSecret:
    view.check_provision(device_id, (await _get(service, device_id)).unit, "rotate")
    try:
        secret = await asyncio.to_thread(service.registry.rotate, device_id)
    except UnknownDeviceError as exc:
        raise HTTPException(404, str(exc)) from exc
    await service.devices_changed()
    view.provisioned(device_id, "rotate", {})
    return DeviceSecret(device=view.device(await _get(service, device_id)), secret=secret)


@router.post("/{device_id}/commands", status_code=202)
async def send_command(
    device_id: str, body: CommandIn, service: ServiceDep, view: ViewDep
) -> CommandOut:
    """Send a command (protocol §5.4), or queue it until the terminal is online; answered
    once it is stored. Its progress: `GET …/commands` and `command` events on /api/events."""
    if not view.is_known(device_id):
        raise HTTPException(404, f"unknown device {device_id!r}")
    try:
        record = view.send_command(device_id, body.cmd, body.fields)
    except ControlError as exc:  # the schema refuses what it can see; this is the last word
        raise HTTPException(422, exc.message) from exc
    try:
        await service.commands.durable()
    except NotDurableError as exc:
        raise HTTPException(503, str(exc)) from exc
    return CommandOut(**record.as_dict())


@router.get("/{device_id}/commands")
async def list_commands(
    device_id: str,
    service: ServiceDep,
    view: ViewDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[CommandOut]:
    """The device's commands and what became of each, newest first."""
    view.check_device(await _get(service, device_id))
    stored = await asyncio.to_thread(device_commands, service.engine, device_id, limit)
    return [CommandOut(**r.as_dict()) for r in view.commands(device_id, stored)[:limit]]
