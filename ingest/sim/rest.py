"""REST endpoints (exchangeInfo, ticker/24hr, ticker/price) with Binance's request-weight accounting.

Weights are the ones Binance published in the era of the recorded exchangeInfo (limit 1200/min):
exchangeInfo 10, ticker/24hr 1 for one symbol and 40 for all, ticker/price 1 for one and 2 for all.
Every answer carries ``X-MBX-USED-WEIGHT-1M``. Over the limit the answer is 429 with ``Retry-After``;
a client that keeps calling after a 429 in the same window is banned: 418 with ``Retry-After``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson
from websockets.datastructures import Headers
from websockets.http11 import Response

if TYPE_CHECKING:
    from ingest.sim.server import Simulator

WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    """An HTTP response; websockets closes the TCP connection after it, so we say so."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    hdrs = Headers()
    hdrs["Content-Type"] = "application/json;charset=UTF-8"
    hdrs["Content-Length"] = str(len(data))
    hdrs["Connection"] = "close"
    for key, value in (headers or {}).items():
        hdrs[key] = value
    return Response(status, HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error",
                    hdrs, data)


@dataclass
class ClientWeight:
    """Per client address: weight used in the current window, 429s answered, ban end."""

    window: int = -1
    used: int = 0
    rejected: int = 0
    banned_until: float = 0.0


@dataclass
class RestFault:
    status: int
    remaining: int
    retry_after: int


@dataclass
class WeightLimiter:
    limit: int
    window_s: float
    ban_after: int
    ban_s: float
    clients: dict[str, ClientWeight] = field(default_factory=dict)

    def charge(self, peer: str, weight: int) -> tuple[int, int, int]:
        """-> (status, used, retry_after); status 200 means go ahead."""
        now = time.time()
        client = self.clients.setdefault(peer, ClientWeight())
        window = int(now // self.window_s)
        if window != client.window:
            client.window, client.used, client.rejected = window, 0, 0
        if now < client.banned_until:
            return 418, client.used, math.ceil(client.banned_until - now)
        window_left = max(1, math.ceil((window + 1) * self.window_s - now))
        if client.used + weight > self.limit:
            client.rejected += 1
            if client.rejected > self.ban_after:
                client.banned_until = now + self.ban_s
                return 418, client.used, math.ceil(self.ban_s)
            return 429, client.used, window_left
        client.used += weight
        return 200, client.used, 0


class RestApi:
    """Answers /api/v3/* from the simulator's current universe and market state."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        cfg = sim.cfg
        self.limiter = WeightLimiter(cfg.rest_weight_limit, cfg.rest_weight_window, cfg.rest_ban_after,
                                     cfg.rest_ban_seconds)
        self.faults: list[RestFault] = []

    def inject(self, status: int, count: int, retry_after: int) -> None:
        self.faults.append(RestFault(status, count, retry_after))

    def handle(self, path: str, query: str, peer: str) -> Response:
        stats = self.sim.stats
        stats.rest_requests[path] += 1
        response = self._handle(path, query, peer)
        stats.rest_status[str(response.status_code)] += 1
        return response

    def _handle(self, path: str, query: str, peer: str) -> Response:
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        if self.faults:
            fault = self.faults[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                self.faults.pop(0)
            return self._error(fault.status, fault.retry_after, self.limiter.clients.get(peer, ClientWeight()).used)
        symbols = self._symbols_param(params)
        if isinstance(symbols, Response):
            return symbols
        if path == "/api/v3/exchangeInfo":
            weight = 10
        elif path == "/api/v3/ticker/24hr":
            weight = 1 if symbols and len(symbols) <= 20 else 20 if symbols and len(symbols) <= 100 else 40
        elif path == "/api/v3/ticker/price":
            weight = 1 if symbols and len(symbols) == 1 else 2
        elif path in ("/api/v3/ping", "/api/v3/time"):
            weight = 1
        else:
            return json_response(404, {"code": -1000, "msg": f"Unknown path {path}"})
        status, used, retry_after = self.limiter.charge(peer, weight)
        if status != 200:
            return self._error(status, retry_after, used)
        headers = {WEIGHT_HEADER: str(used)}
        known = self.sim.universe.specs
        if symbols and any(s not in known for s in symbols):
            return json_response(400, {"code": -1121, "msg": "Invalid symbol."}, headers)
        if path == "/api/v3/exchangeInfo":
            return json_response(200, self.sim.universe.serialize(symbols), headers)
        if path == "/api/v3/ping":
            return json_response(200, {}, headers)
        if path == "/api/v3/time":
            return json_response(200, {"serverTime": int(time.time() * 1000)}, headers)
        single = "symbol" in params
        names = symbols if symbols else list(known)
        if path == "/api/v3/ticker/24hr":
            rows = [self.sim.rest_24hr(name) for name in names]
        else:
            rows = [self.sim.rest_price(name) for name in names]
        return json_response(200, rows[0] if single else rows, headers)

    @staticmethod
    def _symbols_param(params: dict[str, str]) -> list[str] | Response | None:
        if "symbol" in params:
            return [params["symbol"].upper()]
        if "symbols" in params:
            try:
                names = orjson.loads(params["symbols"])
            except orjson.JSONDecodeError:
                return json_response(400, {"code": -1100, "msg": "Illegal characters found in parameter 'symbols'"})
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                return json_response(400, {"code": -1100, "msg": "Illegal characters found in parameter 'symbols'"})
            return [n.upper() for n in names]
        return None

    def _error(self, status: int, retry_after: int, used: int) -> Response:
        headers = {WEIGHT_HEADER: str(used)}
        if status in (418, 429):
            headers["Retry-After"] = str(max(1, retry_after))
        if status == 429:
            body = {"code": -1003, "msg": f"Too much request weight used; current limit is {self.limiter.limit} "
                    "request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling "
                    "the API."}
        elif status == 418:
            until = int((time.time() + max(1, retry_after)) * 1000)
            body = {"code": -1003, "msg": f"Way too much request weight used; IP banned until {until}. Please use "
                    "WebSocket Streams for live updates to avoid bans."}
        else:
            body = {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."}
        return json_response(status, body, headers)
