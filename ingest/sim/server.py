"""The simulator server: one port for WebSocket streams, REST and the control API, and the data sources.

websockets serves everything: a request that asks for a WebSocket upgrade on ``/ws...`` or ``/stream``
becomes a connection; every other request is answered in ``process_request`` (REST under ``/api/``, the
control API under ``/_sim/``). The market (generated) or the replay pushes frames to the connections
subscribed to each stream; each connection sends from its own queue.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
from websockets import http11
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response

from ingest.sim import replay as replay_mod
from ingest.sim.connection import Outgoing, SimConnection
from ingest.sim.control import Control
from ingest.sim.faults import FaultError
from ingest.sim.handshake import HandshakeGate
from ingest.sim.ledger import SentLog, Stats
from ingest.sim.market import DAY_MS, Market, SymbolState, load_seed_prices, render_array, render_bodies
from ingest.sim.rest import RestApi, json_response
from ingest.sim.settings import SimConfig
from ingest.sim.universe import Universe

MAX_URL_BYTES = 64 * 1024
NON_ASCII = re.compile(rb"[\x80-\xff]")
METHODS = "`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`"
FALLBACK_MINI = ('{"e":"24hrMiniTicker","E":%d,"s":"BTCUSDT","c":"43250.50000000","o":"43100.00000000",'
                 '"h":"43500.00000000","l":"42800.00000000","v":"15234.56000000","q":"658923456.78000000"}')
ARRAY_STREAMS = (("!miniTicker@arr", "miniticker"), ("!ticker@arr", "ticker"))
SYMBOL_STREAMS = (("@miniTicker", "miniticker", SymbolState.mini_json), ("@ticker", "ticker", SymbolState.ticker_json))


class CountingConnection(ServerConnection):
    """A server connection that tells its SimConnection about every ping and pong frame the client sends.

    Binance counts ping and pong frames toward the 5 incoming messages per second; websockets answers pings
    inside the protocol, below the message iterator the handler reads, so they are counted here."""

    sim_conn: SimConnection | None = None

    def data_received(self, data: bytes) -> None:
        """Percent-encode raw non-ASCII bytes of the request head, so a target sent as UTF-8
        (``/ws/币安人生usdt@ticker``, ``?symbol=币安人生USDT``) parses like its percent-encoded form:
        websockets' HTTP parser accepts ASCII only."""
        if self.request is None and NON_ASCII.search(data):
            data = NON_ASCII.sub(lambda m: b"%%%02X" % m[0][0], data)
        super().data_received(data)

    def process_event(self, event: Any) -> None:
        if isinstance(event, Frame) and event.opcode in (Opcode.PING, Opcode.PONG) and self.sim_conn is not None:
            self.sim_conn.control_frame()
        super().process_event(event)


def parse_ws_path(path: str) -> tuple[bool, list[str]] | None:
    """'/ws/a/b' -> (False, [a, b]); '/stream?streams=a/b' -> (True, [a, b]); other paths -> None."""
    url = urlsplit(path)
    if url.path == "/stream":
        joined = parse_qs(url.query).get("streams", [""])[-1]
        return True, [s for s in joined.split("/") if s]
    if url.path == "/ws" or url.path.startswith("/ws/"):
        return False, [unquote(s) for s in url.path[4:].split("/") if s]
    return None


class Simulator:
    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.stats = Stats("replay" if cfg.replay else "generate")
        self.sent_log = SentLog(cfg.sent_log)
        self.subscribers: dict[str, set[SimConnection]] = {}
        self.connections: dict[int, SimConnection] = {}
        self.closed: collections.deque[dict[str, Any]] = collections.deque(maxlen=500)
        self.next_conn_id = 1
        self.frames: list[replay_mod.ReplayFrame] = []
        self.replay_book: dict[str, dict[str, Any]] = {}
        self.market: Market | None = None
        if cfg.replay:
            self.frames = replay_mod.load(cfg.replay)
            self.stats.replay_frames_total = len(self.frames)
            if cfg.exchange_info:
                self.universe = Universe.load(cfg.exchange_info, cfg.symbols)
            else:
                seen = {t["s"] for f in self.frames for t in replay_mod.tickers_in(f.data)
                        if isinstance(t.get("s"), str)}
                self.universe = Universe.minimal(sorted(seen))
        else:
            if not cfg.exchange_info:
                raise ValueError("--exchange-info or --replay is required")
            self.universe = Universe.load(cfg.exchange_info, cfg.symbols)
            self.market = Market(self.universe, cfg.seed, load_seed_prices(cfg.seed_prices))
        self.rest = RestApi(self)
        self.handshakes = HandshakeGate(cfg.max_connection_attempts, cfg.connection_attempt_window, self.stats)
        self.control = Control(self)
        self.replay_start = asyncio.Event()
        self.stopping = asyncio.Event()
        self.ws_url = self.http_url = ""

    # -- HTTP ----------------------------------------------------------------------------------------

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if parse_ws_path(request.path) is not None:
            if request.headers.get("Upgrade", "").lower() == "websocket":
                peer = connection.remote_address[0] if connection.remote_address else "?"
                return self.handshakes.check(peer)
            return json_response(426, {"error": "WebSocket upgrade expected on this path"})
        if url.path.startswith("/_sim/"):
            return self.control.handle(request.method, url.path, url.query)
        if url.path.startswith("/api/"):
            peer = connection.remote_address[0] if connection.remote_address else "?"
            return self.rest.handle(url.path, url.query, peer)
        return json_response(404, {"code": -1000, "msg": f"Unknown path {url.path}"})

    def rest_24hr(self, symbol: str) -> dict[str, Any] | None:
        """A REST ticker/24hr row; in replay mode the last replayed ticker of the symbol, on the replay's clock.

        Replay: a symbol with nothing replayed yet has no row (None): a row stamped with the wall clock (or with
        values of frames still to come) would make the replayed frames look older than the snapshot."""
        if self.market is not None:
            return self.market.states[symbol].rest_24hr(int(time.time() * 1000))
        ticker = self.replay_book.get(symbol)
        return rest_from_ticker(symbol, ticker) if ticker is not None else None

    def rest_price(self, symbol: str) -> dict[str, str] | None:
        if self.market is not None:
            return self.market.states[symbol].rest_price()
        ticker = self.replay_book.get(symbol)
        return {"symbol": symbol, "price": str(ticker.get("c", "0.00000000"))} if ticker is not None else None

    def sample_ticker(self, full: bool, symbol: str | None) -> str:
        """A current ticker's JSON (base for malformed frames)."""
        if self.market is not None:
            state = self.market.states.get(symbol or "") or (
                self.control.rng.choice(self.market.trading) if self.market.trading else None)
            if state is not None:
                if not state.E:
                    state.E = self.market.next_event_time()
                return state.ticker_json() if full else state.mini_json()
        for row in self.replay_book.values():
            return orjson.dumps(row).decode()
        return FALLBACK_MINI % int(time.time() * 1000)

    def universe_changed(self) -> None:
        if self.market is not None:
            self.market.refresh_trading()

    # -- WebSocket -----------------------------------------------------------------------------------

    async def handler(self, ws: ServerConnection) -> None:
        parsed = parse_ws_path(ws.request.path if ws.request else "")
        combined, streams = parsed if parsed else (False, [])
        peer = ws.remote_address[0] if ws.remote_address else "?"
        cfg, stats = self.cfg, self.stats
        if cfg.max_connections_per_ip and \
                sum(1 for c in self.connections.values() if c.peer == peer) >= cfg.max_connections_per_ip:
            stats.connections_rejected["per_address_limit"] += 1
            stats.closes["1008"] += 1
            await ws.close(1008, "too many connections from this address")
            return
        if len(streams) > cfg.max_streams:
            stats.connections_rejected["too_many_streams"] += 1
            stats.closes["1008"] += 1
            await ws.close(1008, f"too many streams: at most {cfg.max_streams} per connection")
            return
        conn = SimConnection(self, self.next_conn_id, ws, combined, streams)
        if isinstance(ws, CountingConnection):
            ws.sim_conn = conn
        self.next_conn_id += 1
        self.connections[conn.id] = conn
        stats.connections_open += 1
        stats.connections_total += 1
        conn.tasks = [asyncio.create_task(conn.sender()), asyncio.create_task(conn.keepalive()),
                      asyncio.create_task(conn.lifetime())]
        self._check_replay_start()
        try:
            async for message in ws:
                stats.messages_received += 1
                if not conn.count_incoming():
                    conn.close(1008, f"too many messages: more than {cfg.max_messages_per_second} per second")
                    break
                reply = self.handle_message(conn, message)
                if reply is not None:
                    await ws.send(reply)
                    self._check_replay_start()
        except ConnectionClosed:
            pass
        finally:
            for task in conn.tasks:
                task.cancel()
            await asyncio.gather(*conn.tasks, *conn.close_tasks, return_exceptions=True)
            if conn.close_code is None:  # the client closed, or the TCP connection broke
                received = ws.protocol.close_rcvd
                conn.close_code = received.code if received else 1006
                conn.close_reason = "client: " + (received.reason if received else "connection lost")
                conn.closed_at = time.time()
            conn.unsubscribe_all()
            conn.drained.set()
            del self.connections[conn.id]
            stats.connections_open -= 1
            self.closed.append(conn.describe())

    def handle_message(self, conn: SimConnection, message: str | bytes) -> str | None:
        """Binance's live methods; the replies and error shapes follow Binance's documentation."""
        try:
            request = orjson.loads(message)
        except orjson.JSONDecodeError as exc:
            return orjson.dumps({"code": 3, "msg": f"Invalid JSON: {exc}", "id": None}).decode()
        if not isinstance(request, dict):
            return orjson.dumps({"code": 2, "msg": "Invalid request: expected an object", "id": None}).decode()
        req_id = request.get("id")
        if not (req_id is None or (isinstance(req_id, int) and req_id >= 0) or isinstance(req_id, str)):
            return orjson.dumps({"code": 2, "msg": "Invalid request: request ID must be an unsigned integer",
                                 "id": None}).decode()
        method, params = request.get("method"), request.get("params", [])

        def error(code: int, msg: str) -> str:
            return orjson.dumps({"code": code, "msg": msg, "id": req_id}).decode()

        def result(value: Any) -> str:
            return orjson.dumps({"result": value, "id": req_id}).decode()

        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                return error(2, "Invalid request: params must be a list of stream names")
            params = [unquote(p) if "%" in p else p for p in params]  # "stream names may be URL-encoded"
            if method == "SUBSCRIBE":
                if len(set(conn.streams) | set(params)) > self.cfg.max_streams:
                    return error(2, f"Invalid request: at most {self.cfg.max_streams} streams per connection")
                for stream in params:
                    conn.add_stream(stream)
            else:
                for stream in params:
                    conn.remove_stream(stream)
            return result(None)
        if method == "LIST_SUBSCRIPTIONS":
            return result(list(conn.streams))
        if method == "SET_PROPERTY":
            if isinstance(params, list) and len(params) == 2 and params[0] == "combined" \
                    and isinstance(params[1], bool):
                conn.combined = params[1]
                return result(None)
            return error(1, "Invalid value type: expected Boolean")
        if method == "GET_PROPERTY":
            if params == ["combined"]:
                return result(conn.combined)
            return error(2, "Invalid request: unknown property")
        return error(2, f"Invalid request: unknown variant `{method}`, expected one of {METHODS}")

    # -- delivery ------------------------------------------------------------------------------------

    def deliver(self, conns: set[SimConnection], stream: str, kind: str, payload: str, count: int,
                entries: list[tuple[str, int, str]] | None, combined: str | None = None) -> None:
        """Queue one frame for each connection, raw or in the combined envelope as each one asked."""
        stream_json = orjson.dumps(stream).decode()
        raw_item = combined_item = None
        for conn in list(conns):
            if conn.combined:
                if combined_item is None:
                    wrapped = combined if combined is not None else (
                        '{"stream":' + stream_json + ',"data":' + payload + "}")
                    combined_item = Outgoing(wrapped, stream_json, kind, count, entries)
                conn.enqueue(combined_item)
            else:
                if raw_item is None:
                    raw_item = Outgoing(payload, stream_json, kind, count, entries)
                conn.enqueue(raw_item)

    def publish(self, changed: list[SymbolState]) -> None:
        """Array frames with every changed symbol, and one frame per changed symbol for symbol streams.

        The values are rendered first and E stamped after (``Market.stamp``), right before the frames are
        queued: E is when the event is complete and about to be sent, as on Binance. Stamping E before
        rendering (about 15 ms for 3,000 tickers) counted the simulator's string formatting as lag."""
        assert self.market is not None
        subs = self.subscribers
        log = self.sent_log.enabled
        arrays = [(stream, kind, conns, render_bodies(kind, changed))
                  for stream, kind in ARRAY_STREAMS if (conns := subs.get(stream))]
        event_time = self.market.stamp(changed)
        for stream, kind, conns, bodies in arrays:
            datas = render_array(kind, bodies, event_time)
            entries = [(s.name, event_time, d) for s, d in zip(changed, datas, strict=True)] if log else None
            self.deliver(conns, stream, kind, "[" + ",".join(datas) + "]", len(datas), entries)
        if any(not name.startswith("!") for name in subs):
            for state in changed:
                for suffix, kind, render in SYMBOL_STREAMS:
                    for symbol in state.stream_symbols:
                        conns = subs.get(symbol + suffix)
                        if conns:
                            data = render(state)
                            self.deliver(conns, symbol + suffix, kind, data, 1,
                                         [(state.name, state.E, data)] if log else None)

    async def generate(self) -> None:
        """Tick every interval; ``rate`` tickers per second spread over the intervals (all when unset)."""
        assert self.market is not None
        loop = asyncio.get_running_loop()
        interval, rate = max(0.001, self.cfg.interval), self.cfg.rate
        deadline = last = loop.time()
        carry = 0.0
        while True:
            deadline += interval
            delay = deadline - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                deadline = loop.time()  # running late: do not burst to catch up
                await asyncio.sleep(0)
            now = loop.time()
            trading = len(self.market.trading)
            if rate is None:
                count = trading
            else:
                carry += rate * (now - last)
                count = int(carry)
                carry = carry - count if count <= trading else 0.0
            last = now
            changed = self.market.tick(count, stamp=False)
            if changed:
                self.stats.generated_ticks += 1
                self.stats.generated_tickers += len(changed)
                self.publish(changed)
            self.sent_log.flush()

    def _check_replay_start(self) -> None:
        subscribed = sum(1 for c in self.connections.values() if c.streams)
        if subscribed >= self.cfg.replay_start_clients:
            self.replay_start.set()

    async def run_replay(self) -> None:
        """Send the recorded frames in order, then wait for every queue to drain before saying finished."""
        await self.replay_start.wait()
        fast = self.cfg.replay_timing == "fast"
        speed = max(self.cfg.replay_speed, 1e-6)
        previous: int | None = None
        log = self.sent_log.enabled
        for frame in self.frames:
            if not fast and frame.event_time is not None:
                if previous is not None and frame.event_time > previous:
                    await asyncio.sleep((frame.event_time - previous) / 1000.0 / speed)
                previous = frame.event_time
            for conn in list(self.connections.values()):
                if len(conn.queue) > self.cfg.max_queue_frames // 2:
                    await conn.drained.wait()  # back-pressure instead of dropping a slow reader
            tickers = replay_mod.tickers_in(frame.data)
            for ticker in tickers:
                if isinstance(ticker.get("s"), str):
                    row = self.replay_book.setdefault(ticker["s"], {})
                    if "C" not in ticker:  # a mini ticker: its E is the latest close time, not an older C
                        row.pop("C", None)
                        row.pop("O", None)
                    row.update(ticker)
            kind = replay_mod.TICKER_KINDS[tickers[0]["e"]] if tickers else ""
            entries = None
            if log and tickers:
                entries = [(str(t.get("s")), t["E"] if isinstance(t.get("E"), int) else -1,
                            orjson.dumps(t).decode()) for t in tickers]
            conns = self.subscribers.get(frame.stream, set()) if frame.stream else set(self.connections.values())
            if conns:
                self.deliver(conns, frame.stream or "", kind, frame.raw, len(tickers), entries, frame.combined)
            self.stats.replay_frames_done += 1
            if fast:
                await asyncio.sleep(0)
        for conn in list(self.connections.values()):
            await conn.drained.wait()  # set once its queue is empty and the last send() returned
        self.sent_log.flush()
        self.stats.replay_finished = True

    # -- lifecycle -----------------------------------------------------------------------------------

    async def scheduled_fault(self, fault: dict[str, Any]) -> None:
        fault = dict(fault)
        at, every = float(fault.pop("at", 0)), fault.pop("every", None)
        await asyncio.sleep(at)
        while True:
            try:
                self.control.apply_fault(fault)
            except FaultError as exc:
                print(f"ingest sim: fault {fault}: {exc}", file=sys.stderr)
                return
            if not every:
                return
            await asyncio.sleep(float(every))

    def watch_stdin(self) -> None:
        """Stop when stdin closes: a parent (test fixture, demo) that dies takes the simulator with it.

        A daemon thread, not the loop's executor, so that a blocked read never delays the exit."""
        loop = asyncio.get_running_loop()

        def wait_for_eof() -> None:
            sys.stdin.buffer.read()
            loop.call_soon_threadsafe(self.stopping.set)

        threading.Thread(target=wait_for_eof, name="stdin-eof", daemon=True).start()

    async def run(self, on_ready: Callable[[str, str], None] | None = None) -> None:
        cfg = self.cfg
        # A combined-stream URL with 1024 streams is longer than websockets' default 8 KiB request line.
        http11.MAX_LINE_LENGTH = max(http11.MAX_LINE_LENGTH, MAX_URL_BYTES)
        # compression=None: no permessage-deflate; deflating tens of MB/s of JSON costs more CPU than
        # generating it, and a client must not depend on compression being offered.
        async with serve(self.handler, cfg.host, cfg.port, process_request=self.process_request,
                         ping_interval=None, close_timeout=cfg.close_timeout, max_size=cfg.max_frame_bytes,
                         max_queue=64, compression=None, create_connection=CountingConnection) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            self.ws_url, self.http_url = f"ws://{cfg.host}:{port}", f"http://{cfg.host}:{port}"
            if on_ready:
                on_ready(self.ws_url, self.http_url)
            background = [asyncio.create_task(self.run_replay() if cfg.replay else self.generate())]
            background += [asyncio.create_task(self.scheduled_fault(f)) for f in cfg.faults]
            if cfg.exit_on_stdin_eof:
                self.watch_stdin()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self.stopping.set)
            try:
                if cfg.duration:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stopping.wait(), cfg.duration)
                else:
                    await self.stopping.wait()
            finally:
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
                for conn in list(self.connections.values()):
                    conn.close(1001, "simulator shutting down")
                self.sent_log.flush()
        self.sent_log.close()


def rest_from_ticker(symbol: str, t: dict[str, Any]) -> dict[str, Any]:
    """REST ticker/24hr in replay mode: the last replayed ticker's values under REST names, its own times.

    closeTime is the ticker's ``C`` (a full ticker) or ``E`` (a mini ticker has no C): the replay's clock."""
    zero = "0.00000000"
    close_time = t.get("C", t.get("E", 0))
    return {
        "symbol": symbol, "priceChange": t.get("p", zero), "priceChangePercent": t.get("P", "0.000"),
        "weightedAvgPrice": t.get("w", zero), "prevClosePrice": t.get("x", zero), "lastPrice": t.get("c", zero),
        "lastQty": t.get("Q", zero), "bidPrice": t.get("b", zero), "bidQty": t.get("B", zero),
        "askPrice": t.get("a", zero), "askQty": t.get("A", zero), "openPrice": t.get("o", zero),
        "highPrice": t.get("h", zero), "lowPrice": t.get("l", zero), "volume": t.get("v", zero),
        "quoteVolume": t.get("q", zero), "openTime": t.get("O", close_time - DAY_MS), "closeTime": close_time,
        "firstId": t.get("F", -1), "lastId": t.get("L", -1), "count": t.get("n", 0),
    }
