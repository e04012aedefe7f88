"""A small real WebSocket server speaking Binance's stream protocol, for the connection tests.

It is not a mock: the client under test talks to it over TCP with the real websockets library. It serves
``/ws/<a>/<b>`` (raw) and ``/stream?streams=a/b`` (combined), answers SUBSCRIBE/UNSUBSCRIBE, pushes one
mini ticker per stream every ``interval_s`` with a per-stream sequence number as event time, and can be
told to close with a code, go silent, send an oversized frame or a ``serverShutdown`` event, or refuse the
next handshakes with an HTTP status (451, 403, 429 ...). Every handshake attempt is timed in ``attempts``.
Bound to 127.0.0.1, stopped by the test.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response


@dataclass(eq=False)
class ServerSide:
    ws: ServerConnection
    path: str
    streams: list[str]
    combined: bool
    requests: list[dict[str, Any]] = field(default_factory=list)


class FakeBinance:
    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self.connections: list[ServerSide] = []
        self.silent = False
        self.seq: dict[str, int] = {}
        self.server: Server | None = None
        self.refuse_subscribe = False
        self.refuse_status: int | None = None  # refuse the next refuse_count handshakes with this status
        self.refuse_count = 0
        self.refuse_headers: dict[str, str] = {}
        self.attempts: list[float] = []  # time.monotonic() of every handshake attempt
        self._broadcaster: asyncio.Task[None]

    async def __aenter__(self) -> FakeBinance:
        self.server = await serve(self._handler, "127.0.0.1", 0, max_size=None, process_request=self._process_request)
        self._broadcaster = asyncio.create_task(self._broadcast())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self._broadcaster.cancel()
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = next(iter(self.server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    def open_connections(self) -> list[ServerSide]:
        return [c for c in self.connections if c.ws.state.name == "OPEN"]

    async def close_all(self, code: int, reason: str = "") -> None:
        for conn in self.open_connections():
            await conn.ws.close(code, reason)

    def drop_all(self) -> None:
        """Abrupt TCP drop: the client sees no close frame (1006)."""
        for conn in self.open_connections():
            conn.ws.transport.abort()

    async def send_raw(self, payload: str) -> None:
        for conn in self.open_connections():
            await conn.ws.send(payload)

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        self.attempts.append(time.monotonic())
        if self.refuse_status is None or self.refuse_count <= 0:
            return None
        self.refuse_count -= 1
        response = ws.respond(self.refuse_status, f"refused with {self.refuse_status} by the test server\n")
        for name, value in self.refuse_headers.items():
            response.headers[name] = value
        return response

    async def server_shutdown(self, event_time: int = 1) -> None:
        """Binance's announcement that it will close the connections (since 2026-05)."""
        for conn in self.open_connections():
            data = {"e": "serverShutdown", "E": event_time}
            payload = {"stream": "!serverShutdown", "data": data} if conn.combined else data
            await conn.ws.send(json.dumps(payload, separators=(",", ":")))

    async def _handler(self, ws: ServerConnection) -> None:
        target = urlsplit(ws.request.path)
        if target.path.startswith("/stream"):
            streams = parse_qs(target.query).get("streams", [""])[0].split("/")
            combined = True
        else:
            streams = [s for s in target.path.removeprefix("/ws/").split("/") if s]
            combined = False
        side = ServerSide(ws, ws.request.path, streams, combined)
        self.connections.append(side)
        try:
            async for message in ws:
                request = json.loads(message)
                side.requests.append(request)
                if self.refuse_subscribe:
                    await ws.send(json.dumps({"error": {"code": 2, "msg": "Invalid request"}, "id": request["id"]}))
                    continue
                if request["method"] == "SUBSCRIBE":
                    side.streams.extend(s for s in request["params"] if s not in side.streams)
                elif request["method"] == "UNSUBSCRIBE":
                    side.streams = [s for s in side.streams if s not in request["params"]]
                await ws.send(json.dumps({"result": None, "id": request["id"]}))
        except Exception:  # the client went away; nothing to do in a test server
            pass
        finally:
            side.streams = []

    async def _broadcast(self) -> None:
        """One event source fanned out to every open connection, like the exchange: event time is a global
        tick number, so a client that switches connections can prove it saw every tick."""
        tick = 0
        while True:
            await asyncio.sleep(self.interval_s)
            if self.silent:
                continue
            tick += 1
            for side in self.open_connections():
                for stream in list(side.streams):
                    symbol = stream.partition("@")[0].upper()
                    data = {"e": "24hrMiniTicker", "E": tick, "s": symbol, "c": "1.00000000"}
                    payload = {"stream": stream, "data": data} if side.combined else data
                    try:
                        await side.ws.send(json.dumps(payload, separators=(",", ":")))
                    except Exception:  # that connection is closing; the others go on
                        continue
