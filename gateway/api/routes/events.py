from __future__ import annotations

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from gateway.api.auth import resolve
from gateway.api.stream import deny, visible
from gateway.service import GatewayService

router = APIRouter(tags=["events"])


@router.websocket("/api/events")
async def events(websocket: WebSocket) -> None:
    """Live gateway events (floor, presence, alarms, commands) for the console: signed in (the
    session cookie, or a bearer token), same origin (checked by the app's middleware), and only
    the events of the caller's scope."""
    caller = await resolve(websocket)
    if caller is None or not caller.scope.may("read"):
        await deny(websocket, caller)
        return
    service: GatewayService = websocket.app.state.service
    await websocket.accept()
    queue = service.hub.subscribe()
    try:
        while True:
            message = await queue.get()
            if visible(service, caller, message):
                await websocket.send_json(message)
    except WebSocketDisconnect:
        pass
    finally:
        service.hub.unsubscribe(queue)
