"""What the two WebSockets share: refusing a handshake without credentials (401) or rights
(403), and filtering hub messages by the caller's scope."""

from __future__ import annotations

from typing import Any

from fastapi import WebSocket
from fastapi.responses import PlainTextResponse

from gateway.api.services.access import SignedIn
from gateway.auth.scope import event_visible
from gateway.service import GatewayService


async def deny(websocket: WebSocket, caller: SignedIn | None) -> None:
    status, text = (401, "sign in first") if caller is None else (403, "not allowed")
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(PlainTextResponse(text, status_code=status))
    else:
        await websocket.close(code=1008, reason=text)


def visible(service: GatewayService, caller: SignedIn, message: dict[str, Any]) -> bool:
    runner = service.runner

    def unit_of(device: str) -> str | None:
        info = runner.control.directory.get(device) if runner is not None else None
        return info.unit if info is not None else None

    return event_visible(caller.scope, message, unit_of)
