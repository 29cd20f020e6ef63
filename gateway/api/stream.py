"""What the two WebSockets share: refusing a handshake without credentials (401) or rights
(403), filtering hub messages by the caller's scope, and ending the stream when the caller's
session or token ends (signed out, expired, account disabled or its password changed)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Set
from typing import Any, TypeVar

from fastapi import WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse

from gateway.api.auth import resolve
from gateway.api.services.access import SignedIn
from gateway.auth.scope import event_visible
from gateway.service import GatewayService

#: How often an open stream checks that its session or token is still valid.
RECHECK_S = 30.0

T = TypeVar("T")


class SessionRecheck:
    """Every RECHECK_S, whether the caller's session or token is still valid; when it is not,
    the stream is closed with code 1008. Loops wait at most `wait_s()` for their next item."""

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket
        self._due = time.monotonic() + RECHECK_S

    def wait_s(self) -> float:
        return max(0.0, self._due - time.monotonic())

    async def still_signed_in(self) -> bool:
        """True, rechecking first if due; False once the stream has been closed for it."""
        if time.monotonic() < self._due:
            return True
        if await resolve(self._websocket) is None:
            with contextlib.suppress(Exception):  # the caller may be gone already
                await self._websocket.close(code=1008, reason="signed out")
            return False
        self._due = time.monotonic() + RECHECK_S
        return True


class CallerWatch:
    """Waits for the next item to send on a WebSocket whose caller never speaks, watching for
    its leaving meanwhile: that (or the server closing) only shows on a receive, and a stream
    that only sent lived on until its next item (and held up the HTTP server's shutdown)."""

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket
        self._receiver = asyncio.create_task(websocket.receive())

    async def next(self, queue: asyncio.Queue[T], wait: float) -> T | None:
        """The next item of `queue` within `wait` seconds, else None; WebSocketDisconnect once
        the caller has left. Whatever the caller sends is ignored."""
        getter = asyncio.create_task(queue.get())
        done, _ = await asyncio.wait(
            {getter, self._receiver}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
        )
        if self._receiver in done:
            if self._receiver.result()["type"] == "websocket.disconnect":
                getter.cancel()  # a cancelled get leaves its item in the queue
                raise WebSocketDisconnect
            self._receiver = asyncio.create_task(self._websocket.receive())
        if getter in done:
            return getter.result()
        getter.cancel()
        return None

    def close(self) -> None:
        self._receiver.cancel()


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
    watch = CallerWatch(websocket)
    recheck = SessionRecheck(websocket)
    try:
        while True:
            message = await watch.next(queue, recheck.wait_s())
            if not await recheck.still_signed_in():
                return
            if message is None or (kinds is not None and message.get("kind") not in kinds):
                continue
            if visible(service, caller, message):
                await websocket.send_json(message)
    except WebSocketDisconnect:
        pass
    finally:
        watch.close()
        service.hub.unsubscribe(queue)
