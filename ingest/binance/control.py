"""The control channel of one WebSocket connection: SUBSCRIBE/UNSUBSCRIBE with request ids, paced, answered.

Binance counts every incoming message against 5 per second and connection, our pings and pongs included, so
requests are sent at most every ``CONTROL_INTERVAL_S`` (~3 per second) and each waits for its answer
(``{"result": null, "id": 7}``) before the next; an error answer or none within ``CONTROL_RESPONSE_TIMEOUT_S``
is a ``ControlError``, and the supervisor reconnects that connection with its full stream list. The answers
arrive on the data path: the reader hands short frames that mention ``"id"`` to ``answer`` (data frames cost
one substring search at most).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection

from ingest.binance import streams as st

log = logging.getLogger("ingest.binance.connection")

CONTROL_INTERVAL_S = 0.34
"""At most ~3 SUBSCRIBE/UNSUBSCRIBE per second and connection: Binance allows 5 incoming messages per second
and counts our pings and pongs too, so we leave room for those."""
CONTROL_RESPONSE_TIMEOUT_S = 10.0
MAX_ANSWER_BYTES = 2048
"""Answers are short; longer frames are data and are never parsed here."""


class ControlError(RuntimeError):
    """A SUBSCRIBE/UNSUBSCRIBE was refused, not answered, or its connection closed first."""


class ControlChannel:
    """Requests and their answers on one connection. ``ids`` is shared by the worker's connections, so a
    request id names one request in the logs."""

    def __init__(self, connection_id: str, ids: Iterator[int]) -> None:
        self.connection_id = connection_id
        self._ids = ids
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_send_mono = 0.0

    async def request(self, ws: ClientConnection, method: str, names: list[str]) -> None:
        """Send ``method`` for ``names`` in chunks, paced, each waiting for its answer."""
        loop = asyncio.get_running_loop()
        for params in st.chunks(names):
            wait = self._next_send_mono - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._next_send_mono = time.monotonic() + CONTROL_INTERVAL_S
            request_id = next(self._ids)
            answer: asyncio.Future[dict[str, Any]] = loop.create_future()
            self._pending[request_id] = answer
            try:
                await ws.send(orjson.dumps({"method": method, "params": params, "id": request_id}).decode())
                reply = await asyncio.wait_for(answer, CONTROL_RESPONSE_TIMEOUT_S)
            finally:
                self._pending.pop(request_id, None)
            if reply.get("error") is not None or ("code" in reply and "result" not in reply):
                raise ControlError(f"{method} refused: {reply}")
            log.info("websocket %s %s %d streams", self.connection_id, method, len(params),
                     extra={"connection_id": self.connection_id, "streams": len(params), "method": method})

    def answer(self, frame: str | bytes) -> bool:
        """True when the frame is an answer to a request (or an unsolicited error answer); it is consumed."""
        if len(frame) > MAX_ANSWER_BYTES or isinstance(frame, bytes) or '"id"' not in frame:
            return False
        try:
            reply = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(reply, dict) or "id" not in reply or not ({"result", "error", "code"} & reply.keys()):
            return False
        waiting = self._pending.get(reply["id"]) if isinstance(reply["id"], int) else None
        if waiting is not None and not waiting.done():
            waiting.set_result(reply)
        elif reply.get("error") is not None or "code" in reply:
            log.warning("websocket %s: server error %s", self.connection_id, frame,
                        extra={"connection_id": self.connection_id})
        return True

    def close(self, reason: str) -> None:
        """The connection is gone: every request still waiting fails now instead of at its timeout."""
        for waiting in self._pending.values():
            if not waiting.done():
                waiting.set_exception(ControlError(f"connection closed ({reason})"))
