from __future__ import annotations

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from gateway.service import GatewayService

router = APIRouter(tags=["events"])


@router.websocket("/api/events")
async def events(websocket: WebSocket) -> None:
    """Live gateway events (floor, presence, alarms, commands) for the console."""
    service: GatewayService = websocket.app.state.service
    await websocket.accept()
    queue = service.hub.subscribe()
    try:
        while True:
            await websocket.send_json(await queue.get())
    except WebSocketDisconnect:
        pass
    finally:
        service.hub.unsubscribe(queue)
