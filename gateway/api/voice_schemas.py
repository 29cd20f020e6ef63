"""Schemas of the voice API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class SayJobOut(BaseModel):
    """A spoken message: `queued` -> `waiting` (for the floor) -> `talking` -> `done`, or
    `denied` / `preempted` / `failed` with `reason` (and `by`: who had or took the floor)."""

    id: str
    account: str
    target: str
    duration_s: float
    created_at: float
    state: Literal["queued", "waiting", "talking", "done", "denied", "preempted", "failed"]
    burst: int | None
    reason: str | None
    by: str | None
