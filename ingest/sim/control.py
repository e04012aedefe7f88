"""The control API under ``/_sim/``: stats, connections, faults, listings and delistings at run time.

Parameters travel in the query string (``POST /_sim/fault?type=close&code=1011``; GET works too) because
the HTTP parser of websockets, which serves this port, does not accept request bodies. Numbers in the
query are parsed as numbers. Answers are JSON; a bad request is a 400 with ``{"error": "..."}``.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from websockets.http11 import Response

from ingest.sim.connection import Outgoing, SimConnection
from ingest.sim.faults import MALFORMED_KINDS, REST_FAULT_STATUSES, FaultError, coerce, malformed_payload, wrap_combined
from ingest.sim.handshake import HANDSHAKE_FAULT_STATUSES
from ingest.sim.rest import SYMBOL_STATUSES, json_response

if TYPE_CHECKING:
    from ingest.sim.server import Simulator


class Control:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.rng = random.Random(0)

    def handle(self, method: str, path: str, query: str) -> Response:
        params = {k: coerce(v[-1]) for k, v in parse_qs(query).items()}
        try:
            if path == "/_sim/stats":
                return json_response(200, self.sim.stats.snapshot())
            if path == "/_sim/connections":
                return json_response(200, {
                    "open": [c.describe() for c in self.sim.connections.values()],
                    "closed": list(self.sim.closed),
                })
            if path == "/_sim/fault":
                return json_response(200, self.apply_fault(params))
            if path == "/_sim/listing":
                return json_response(200, self.listing(params))
            if path == "/_sim/delisting":
                return json_response(200, self.delisting(params))
        except FaultError as exc:
            return json_response(400, {"error": str(exc)})
        return json_response(404, {"error": f"unknown control path {path}"})

    # -- faults --------------------------------------------------------------------------------------

    def targets(self, conn: Any) -> list[SimConnection]:
        open_conns = [c for c in self.sim.connections.values() if c.close_code is None]
        if conn in (None, "all"):
            return open_conns
        if isinstance(conn, int):
            return [c for c in open_conns if c.id == conn]
        raise FaultError(f"conn must be 'all' or a connection id, not {conn!r}")

    def apply_fault(self, params: dict[str, Any]) -> dict[str, Any]:
        kind = params.get("type")
        if kind == "rest":
            status = int(params.get("status", 429))
            count = int(params.get("count", 1))
            if status not in REST_FAULT_STATUSES and not 500 <= status <= 599:
                raise FaultError(f"rest status must be one of {REST_FAULT_STATUSES} or 5xx, not {status}")
            self.sim.rest.inject(status, count, int(params.get("retry_after", 5)))
            return {"applied": "rest", "status": status, "count": count}
        if kind == "handshake":
            status = int(params.get("status", 451))
            count = int(params.get("count", 1))
            if status not in HANDSHAKE_FAULT_STATUSES:
                raise FaultError(f"handshake status must be one of {HANDSHAKE_FAULT_STATUSES}, not {status}")
            self.sim.handshakes.inject(status, count)
            return {"applied": "handshake", "status": status, "count": count}
        conns = self.targets(params.get("conn", "all"))
        if kind == "close":
            code = int(params.get("code", 1011))
            for conn in conns:
                conn.close(code, str(params.get("reason", f"simulated close {code}")))
        elif kind == "server_shutdown":
            grace = float(params.get("grace", 10))
            for conn in conns:
                conn.server_shutdown(grace)
        elif kind == "expire":
            for conn in conns:
                conn.close(1001, "maximum connection lifetime reached")
        elif kind == "silence":
            for conn in conns:
                conn.silence(float(params.get("seconds", 5)))
        elif kind == "slow":
            for conn in conns:
                conn.slow(float(params.get("delay_ms", 500)), float(params.get("seconds", 5)))
        elif kind == "duplicate":
            for conn in conns:
                conn.duplicates_pending += int(params.get("count", 1))
        elif kind == "malformed":
            malformed = str(params.get("kind", "invalid_json"))
            if malformed not in MALFORMED_KINDS:
                raise FaultError(f"unknown malformed kind {malformed!r}; one of {', '.join(MALFORMED_KINDS)}")
            for conn in conns:
                for _ in range(int(params.get("count", 1))):
                    conn.enqueue(self.malformed_frame(conn, malformed, int(params.get("size", 2 * 1024 * 1024))))
        else:
            raise FaultError(f"unknown fault type {kind!r}")
        return {"applied": kind, "connections": [c.id for c in conns]}

    def malformed_frame(self, conn: SimConnection, kind: str, size: int) -> Outgoing:
        """A defective frame on the connection's first stream, built from a current real ticker."""
        stream = conn.streams[0] if conn.streams else "!miniTicker@arr"
        full = stream == "!ticker@arr" or stream.endswith("@ticker")
        is_array = stream.startswith("!")
        symbol = None if is_array else stream.split("@", 1)[0].upper()
        payload = malformed_payload(kind, self.sim.sample_ticker(full, symbol), is_array, size)
        if conn.combined:
            payload = wrap_combined(stream, payload)
        return Outgoing(payload, fault=f"malformed:{kind}")

    # -- universe changes ----------------------------------------------------------------------------

    def listing(self, params: dict[str, Any]) -> dict[str, Any]:
        symbol = str(params.get("symbol", "")).upper()
        if not symbol:
            raise FaultError("listing needs symbol (and base, quote)")
        quote = str(params.get("quote", "USDT")).upper()
        base = str(params.get("base", symbol.removesuffix(quote))).upper()
        spec = self.sim.universe.list_symbol(symbol, base, quote, self.status(params, "TRADING"))
        self.sim.universe_changed()
        return {"listed": spec.entry}

    @staticmethod
    def status(params: dict[str, Any], default: str) -> str:
        status = str(params.get("status", default))
        if status not in SYMBOL_STATUSES:
            raise FaultError(f"status must be one of {', '.join(SYMBOL_STATUSES)}, not {status!r}")
        return status

    def delisting(self, params: dict[str, Any]) -> dict[str, Any]:
        symbol = str(params.get("symbol", "")).upper()
        if symbol not in self.sim.universe.specs:
            raise FaultError(f"unknown symbol {symbol!r}")
        spec = self.sim.universe.set_status(symbol, self.status(params, "BREAK"))
        self.sim.universe_changed()
        return {"delisted": symbol, "status": spec.status}
