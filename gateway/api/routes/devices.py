from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException

from gateway.api.deps import RunnerDep, ServiceDep
from gateway.api.schemas import CommandIn, CommandOut, DeviceCreate, DeviceOut, DeviceSecret
from gateway.control import Presence
from gateway.runner import GatewayRunner
from gateway.store.errors import DeviceExistsError, InvalidDeviceError, UnknownDeviceError
from gateway.store.registry import Device
from protocol.control import ControlError

router = APIRouter(prefix="/api/devices", tags=["devices"])


def _out(device: Device, runner: GatewayRunner) -> DeviceOut:
    control = runner.control
    presence = control.presence.get(device.id, Presence())
    info = control.directory.get(device.id)
    return DeviceOut(
        id=device.id,
        name=device.name,
        unit=device.unit,
        role=device.role,
        enabled=device.enabled,
        presence=presence.state,
        presence_since_ms=presence.since_ms or None,
        battery=presence.battery,
        talkgroups=sorted(info.talkgroups) if info else [],
        sos=device.id in control.sos,
    )


# Handlers are `async def` on purpose: gateway state belongs to the event loop, so they must not
# run on FastAPI's thread pool; blocking database work goes to a worker thread instead.


@router.get("")
async def list_devices(service: ServiceDep, runner: RunnerDep) -> list[DeviceOut]:
    return [_out(d, runner) for d in await asyncio.to_thread(service.registry.list)]


async def _get(service: ServiceDep, device_id: str) -> Device:
    try:
        return await asyncio.to_thread(service.registry.get, device_id)
    except UnknownDeviceError as exc:
        raise HTTPException(404, str(exc)) from exc


@router.get("/{device_id}")
async def get_device(device_id: str, service: ServiceDep, runner: RunnerDep) -> DeviceOut:
    return _out(await _get(service, device_id), runner)


@router.post("", status_code=201)
async def add_device(body: DeviceCreate, service: ServiceDep, runner: RunnerDep) -> DeviceSecret:
    try:
        device, secret = await asyncio.to_thread(
            service.registry.add, body.id, body.unit, body.role, body.name
        )
    except DeviceExistsError as exc:
        raise HTTPException(409, str(exc)) from exc
    except InvalidDeviceError as exc:
        raise HTTPException(422, str(exc)) from exc
    await service.devices_changed()
    return DeviceSecret(device=_out(device, runner), secret=secret)


async def _change(device_id: str, service: ServiceDep, action: str) -> Device:
    try:
        await asyncio.to_thread(getattr(service.registry, action), device_id)
    except UnknownDeviceError as exc:
        raise HTTPException(404, str(exc)) from exc
    await service.devices_changed()
    return await _get(service, device_id)


@router.post("/{device_id}/disable")
async def disable_device(device_id: str, service: ServiceDep, runner: RunnerDep) -> DeviceOut:
    return _out(await _change(device_id, service, "disable"), runner)


@router.post("/{device_id}/enable")
async def enable_device(device_id: str, service: ServiceDep, runner: RunnerDep) -> DeviceOut:
    return _out(await _change(device_id, service, "enable"), runner)


@router.post("/{device_id}/rotate")
async def rotate_secret(device_id: str, service: ServiceDep, runner: RunnerDep) -> DeviceSecret:
    try:
        secret = await asyncio.to_thread(service.registry.rotate, device_id)
    except UnknownDeviceError as exc:
        raise HTTPException(404, str(exc)) from exc
    await service.devices_changed()
    return DeviceSecret(device=_out(await _get(service, device_id), runner), secret=secret)


@router.post("/{device_id}/commands", status_code=202)
async def send_command(device_id: str, body: CommandIn, runner: RunnerDep) -> CommandOut:
    if runner.control.directory.get(device_id) is None:
        raise HTTPException(404, f"unknown device {device_id!r}")
    try:
        command_id = runner.send_command(device_id, body.cmd, **body.fields)
    except ControlError as exc:  # the schema refuses what it can see; this is the last word
        raise HTTPException(422, exc.message) from exc
    return CommandOut(id=command_id, device=device_id, cmd=body.cmd)
