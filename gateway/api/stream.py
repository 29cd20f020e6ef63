"""What the two WebSockets share: refusing a handshake without credentials (401) or rights
(403), filtering hub messages by the caller's scope, and ending the stream when the caller's
session or token ends (signed out, expired, account disabled or its password changed)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Set
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse

from gateway.api.auth import resolve
from gateway.api.services.access import SignedIn
from gateway.auth.scope import event_visible
from gateway.service import GatewayService

#: How often an open stream checks that its session or token is still valid.
RECHECK_S = 30.0


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

    return event_visible(caller.scope, message, unit_of, service.incidents.placement)


async def serve_stream(websocket: WebSocket, kinds: Set[str] | None = None) -> None:
    """Accept a signed-in caller (else 401/403) and send it the hub's messages of `kinds`
    (None: all) in its scope until it leaves or its credentials end (close code 1008)."""
    caller = await resolve(websocket)
    if caller is None or not caller.scope.may("read"):
        await deny(websocket, caller)
        return
    service: GatewayService = websocket.app.state.service
    await websocket.accept()
    queue = service.hub.subscribe()
    next_check = time.monotonic() + RECHECK_S
    try:
        while True:
            try:
                wait = max(0.0, next_check - time.monotonic())
                message: dict[str, Any] | None = await asyncio.wait_for(queue.get(), wait)
            except TimeoutError:
                message = None
            if time.monotonic() >= next_check:
                if await resolve(websocket) is None:
                    await websocket.close(code=1008, reason="signed out")
                    return
                next_check = time.monotonic() + RECHECK_S
            if message is None or (kinds is not None and message.get("kind") not in kinds):
                continue
            if visible(service, caller, message):
                await websocket.send_json(message)
    except WebSocketDisconnect:
        pass
    finally:
        service.hub.unsubscribe(queue)
