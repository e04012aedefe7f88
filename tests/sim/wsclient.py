"""Small helpers for driving the simulator with a plain websockets client from synchronous tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any, TypeVar

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.frames import Frame, Opcode

T = TypeVar("T")
RECV_TIMEOUT_S = 5.0


def run(coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    """Run one async scenario with an overall bound, so no test can hang."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


async def recv_text(ws: ClientConnection, wait: float = RECV_TIMEOUT_S) -> str | bytes:
    async with asyncio.timeout(wait):
        return await ws.recv()


async def recv_json(ws: ClientConnection, wait: float = RECV_TIMEOUT_S) -> Any:
    return json.loads(await recv_text(ws, wait))


async def recv_until_closed(ws: ClientConnection, wait: float) -> list[str | bytes]:
    """Every frame until the server closes; the close code is then in ``ws.close_code``."""
    frames: list[str | bytes] = []
    async with asyncio.timeout(wait):
        try:
            while True:
                frames.append(await ws.recv())
        except websockets.ConnectionClosed:
            pass
    return frames


def ignore_pings(ws: ClientConnection) -> None:
    """Make this client a bad citizen: it keeps reading but never answers the server's pings."""
    protocol = ws.protocol
    original = protocol.send_frame

    def send_frame(frame: Frame) -> None:
        if frame.opcode is not Opcode.PONG:
            original(frame)

    protocol.send_frame = send_frame  # type: ignore[method-assign]
