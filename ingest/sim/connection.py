"""One simulated client connection: its subscriptions, its outgoing queue and Binance's per-connection rules.

Each connection has its own sender task and queue, so one slow reader (or an injected ``slow`` fault)
delays only itself, never the market or the other clients. Keep-alive is our own loop rather than
websockets' built-in one, because the ``silence`` fault must stop pings and pongs as well as frames.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

RETIRED_STREAMS = frozenset({"!ticker@arr"})  # retired by Binance on 2026-03-26

if TYPE_CHECKING:
    from ingest.sim.server import Simulator


@dataclass(slots=True)
class Outgoing:
    """A frame queued for one connection, with what the sent-log needs once it is on the wire."""

    payload: str | bytes
    stream_json: str = ""  # the stream name, JSON-quoted; "" for fault frames
    kind: str = ""  # "miniticker" | "ticker" | "" (not a ticker frame)
    count: int = 0  # tickers in the frame
    entries: list[tuple[str, int, str]] | None = None  # (symbol, E, ticker JSON), only when the sent-log is on
    fault: str = ""  # "malformed:<kind>" or "server_shutdown" for injected frames


class SimConnection:
    """State and tasks of one WebSocket client."""

    def __init__(self, sim: Simulator, conn_id: int, ws: ServerConnection, combined: bool,
                 streams: list[str]) -> None:
        self.sim = sim
        self.id = conn_id
        self.ws = ws
        self.peer = ws.remote_address[0] if ws.remote_address else "?"
        self.path = ws.request.path if ws.request else ""
        self.combined = combined
        self.streams: list[str] = []
        self.opened = time.time()
        self.queue: collections.deque[Outgoing] = collections.deque()
        self.wakeup = asyncio.Event()
        self.drained = asyncio.Event()  # set while nothing is queued or being sent (replay waits on it)
        self.drained.set()
        self.silent_until = 0.0
        self.slow_delay = 0.0
        self.slow_until = 0.0
        self.duplicates_pending = 0
        self.shutdown_announced: float | None = None
        self.received: collections.deque[float] = collections.deque()
        self.frames_sent = 0
        self.tickers_sent = 0
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed_at: float | None = None
        self.tasks: list[asyncio.Task[Any]] = []
        self.close_tasks: list[asyncio.Future[Any]] = []
        for stream in streams:
            self.add_stream(stream)

    # -- subscriptions -------------------------------------------------------------------------------

    def add_stream(self, stream: str) -> None:
        """Subscribe; a retired stream (``!ticker@arr``) is accepted and listed, but nothing is ever sent on it
        unless ``--serve-retired-streams``, as on Binance since 2026-03-26."""
        if stream not in self.streams:
            self.streams.append(stream)
            if stream in RETIRED_STREAMS and not self.sim.cfg.serve_retired_streams:
                self.sim.stats.retired_subscriptions[stream] += 1
                return
            self.sim.subscribers.setdefault(stream, set()).add(self)

    def remove_stream(self, stream: str) -> None:
        if stream in self.streams:
            self.streams.remove(stream)
            subs = self.sim.subscribers.get(stream)
            if subs is not None:
                subs.discard(self)
                if not subs:
                    del self.sim.subscribers[stream]

    def unsubscribe_all(self) -> None:
        for stream in list(self.streams):
            self.remove_stream(stream)

    # -- outgoing ------------------------------------------------------------------------------------

    @property
    def silent(self) -> bool:
        return time.monotonic() < self.silent_until

    def enqueue(self, item: Outgoing) -> None:
        """Queue a frame; a silent connection loses it, an overfull queue means the client is too slow."""
        if self.close_code is not None:
            return
        if self.silent:
            self.sim.stats.frames_dropped["silence"] += 1
            return
        if len(self.queue) >= self.sim.cfg.max_queue_frames:
            self.sim.stats.frames_dropped["slow_consumer"] += 1
            self.close(1008, "slow consumer: send queue full")
            return
        self.queue.append(item)
        self.drained.clear()
        self.wakeup.set()

    async def sender(self) -> None:
        sim, ws = self.sim, self.ws
        while True:
            while not self.queue:
                self.drained.set()
                self.wakeup.clear()
                await self.wakeup.wait()
            item = self.queue.popleft()
            if self.slow_delay and time.monotonic() < self.slow_until:
                await asyncio.sleep(self.slow_delay)
            if self.silent:
                sim.stats.frames_dropped["silence"] += 1
                continue
            copies = 1
            if self.duplicates_pending and not item.fault:
                self.duplicates_pending -= 1
                copies = 2
            for copy_no in range(copies):
                try:
                    if isinstance(item.payload, bytes):
                        await ws.send(item.payload, text=True)
                    else:
                        await ws.send(item.payload)
                except ConnectionClosed:
                    return
                sim.stats.frames_sent += 1
                sim.stats.bytes_sent += len(item.payload)
                self.frames_sent += 1
                if copy_no:
                    sim.stats.duplicates_sent += 1
                    sim.sent_log.fault("duplicate", self.id, stream=item.stream_json.strip('"'), tickers=item.count)
                elif item.fault == "server_shutdown":
                    sim.stats.server_shutdowns_sent += 1
                    sim.sent_log.fault("server_shutdown", self.id, event=item.payload)
                elif item.fault:
                    kind = item.fault.split(":", 1)[1]
                    sim.stats.malformed_sent[kind] += 1
                    sim.sent_log.fault("malformed", self.id, kind=kind, bytes=len(item.payload))
                elif item.count:
                    sim.stats.tickers_sent[item.kind] += item.count
                    self.tickers_sent += item.count
                    if item.entries:
                        sim.sent_log.tickers(item.stream_json, item.kind, item.entries, self.id)

    # -- Binance's rules -----------------------------------------------------------------------------

    async def keepalive(self) -> None:
        """Ping every ping_interval; no pong within pong_timeout closes the connection (like Binance)."""
        cfg = self.sim.cfg
        while True:
            await asyncio.sleep(cfg.ping_interval)
            if self.silent:
                continue
            try:
                waiter = await self.ws.ping()
            except ConnectionClosed:
                return
            self.sim.stats.pings_sent += 1
            try:
                await asyncio.wait_for(asyncio.shield(waiter), cfg.pong_timeout)
            except TimeoutError:
                if self.silent:
                    continue  # our own silence paused reading; the client is not at fault
                self.close(1011, "pong timeout")
                return

    async def lifetime(self) -> None:
        await asyncio.sleep(self.sim.cfg.max_lifetime)
        self.close(1001, "maximum connection lifetime reached")

    def count_incoming(self) -> bool:
        """Record one incoming message; False when the per-second limit is exceeded."""
        now = time.monotonic()
        self.received.append(now)
        while self.received and now - self.received[0] >= 1.0:
            self.received.popleft()
        return len(self.received) <= self.sim.cfg.max_messages_per_second

    def control_frame(self) -> None:
        """A ping or pong from the client: it counts toward the message limit like a text message."""
        self.sim.stats.control_frames_received += 1
        if not self.count_incoming() and self.close_code is None:
            self.close(1008, f"too many messages: more than {self.sim.cfg.max_messages_per_second} per second "
                             "(pings and pongs count)")

    # -- faults --------------------------------------------------------------------------------------

    def close(self, code: int, reason: str = "") -> None:
        """Close with ``code``; 1006 is not a code one can send, so it means dropping the TCP connection."""
        if self.close_code is not None:
            return
        self.close_code, self.close_reason, self.closed_at = code, reason, time.time()
        self.sim.stats.closes[str(code)] += 1
        if code == 1006:
            transport = self.ws.transport
            if transport is not None:
                transport.abort()
        else:
            self.close_tasks.append(asyncio.ensure_future(self.ws.close(code, reason)))

    def server_shutdown(self, grace: float) -> None:
        """Binance's ``serverShutdown`` event (since 2026-05), then the close ``grace`` seconds later.

        The event goes through the queue like any frame, so it arrives after what was queued before it, and
        the connection keeps streaming until the close (1001, as at the end of the lifetime)."""
        event = f'{{"e":"serverShutdown","E":{int(time.time() * 1000)}}}'
        payload = ('{"stream":"!serverShutdown","data":' + event + "}") if self.combined else event
        self.shutdown_announced = time.time()
        self.enqueue(Outgoing(payload, fault="server_shutdown"))
        asyncio.get_running_loop().call_later(grace, self.close, 1001, "server shutdown")

    def silence(self, seconds: float) -> None:
        """No frames, no pings, no pongs: stop reading (so the protocol never answers pings) for a while."""
        self.silent_until = time.monotonic() + seconds
        self.queue.clear()
        self.drained.set()
        transport = self.ws.transport
        if transport is not None:
            with contextlib.suppress(RuntimeError):
                transport.pause_reading()
            asyncio.get_running_loop().call_later(seconds, self._end_silence)

    def _end_silence(self) -> None:
        if time.monotonic() >= self.silent_until - 0.001 and self.ws.transport is not None:
            with contextlib.suppress(RuntimeError):
                self.ws.transport.resume_reading()

    def slow(self, delay_ms: float, seconds: float) -> None:
        self.slow_delay = delay_ms / 1000.0
        self.slow_until = time.monotonic() + seconds

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id, "peer": self.peer, "path": self.path, "combined": self.combined,
            "streams": list(self.streams), "opened": self.opened, "age_s": round(time.time() - self.opened, 3),
            "frames_sent": self.frames_sent, "tickers_sent": self.tickers_sent, "queued": len(self.queue),
            "silent": self.silent, "shutdown_announced": self.shutdown_announced,
            "close_code": self.close_code, "close_reason": self.close_reason,
            "closed_at": self.closed_at,
        }
