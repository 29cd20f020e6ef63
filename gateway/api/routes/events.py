from __future__ import annotations

from fastapi import APIRouter, WebSocket

from gateway.api.stream import serve_stream

router = APIRouter(tags=["events"])


@router.websocket("/api/events")
async def events(websocket: WebSocket) -> None:
    """Live gateway events (floor, presence, alarms, commands) for the console: signed in (the
    session cookie, or a bearer token), same origin (checked by the app's middleware), and only
    the events of the caller's scope."""
    await serve_stream(websocket)
