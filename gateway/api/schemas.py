"""Pydantic schemas of the API, one per resource."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    broker: str
    mqtt_connected: bool
    devices: int
    devices_online: int


class DeviceOut(BaseModel):
    id: str
    name: str
    unit: str
    role: str
    enabled: bool
    presence: str
    presence_since_ms: int | None
    battery: int | None
    talkgroups: list[str]
    sos: bool


class DeviceCreate(BaseModel):
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    unit: str
    role: Literal["officer", "guard", "dispatcher"]
    name: str | None = None


class DeviceSecret(BaseModel):
    device: DeviceOut
    secret: str = Field(description="shown once; only a hash is stored")


class TalkgroupOut(BaseModel):
    id: str
    name: str
    members: int
    affiliated: int
    floor: str
    talker: str | None


class QueueEntry(BaseModel):
    device: str
    priority: str


class FloorOut(BaseModel):
    key: str
    state: str
    holder: str | None
    burst: int
    priority: str | None
    queue: list[QueueEntry]


class CommandIn(BaseModel):
    cmd: Literal["text", "assign", "stun", "revive", "config", "monitor"]
    fields: dict[str, Any] = Field(default_factory=dict)


class CommandOut(BaseModel):
    id: str
    device: str
    cmd: str


class RecordingOut(BaseModel):
    id: int
    floor_key: str
    talker: str
    burst: int
    started_at: float
    ended_at: float
    duration_ms: int
    frames: int
    lost_frames: int
