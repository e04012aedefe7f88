"""The supervisor of the worker's Binance WebSocket connections: it plans shards, (re)connects and rotates them.

Three modules, one concern each: ``ingest.binance.control`` is one connection's control channel (request ids,
pacing, answers); ``ingest.binance.lifecycle`` is one connection's state machine (``ConnState``) and what is
known about it; this module decides when connections open, rotate and end, and runs each one's reader and
watchdog. Errors of ``on_frame`` are the pipeline's, not the connection's: a ``FatalError`` ends ``run()``
(the worker exits), any other loses that frame and the connection reads on.

One ``StreamSource`` holds a few *shards* (each a set of at most 1,024 streams); each shard is served by one
live WebSocket connection at a time, or two during a rotation. Per shard a supervisor task loops forever:

    connect (URL with the first streams) -> SUBSCRIBE the rest (paced) -> read frames -> connection ends
    -> count the reason -> sleep a backoff delay -> connect again

Why each piece exists (DESIGN §6):
- *Backoff with full jitter, capped, never giving up* (``ingest.backoff``): a dead worker in a running pod is
  worse than a slow one; 1008 ("too many connections/messages") makes the next delay come from the upper
  half of the cap. The backoff resets once a connection delivered data for ``HEALTHY_AFTER_S``, so one
  drop after a day of service reconnects at once, while a flapping server is not hammered.
- *Stale watchdog*: a TCP connection can die without a FIN (NAT timeout, a half-open socket); no error is
  ever raised. A frame deadline (``settings.stale_timeout_s``, automatic = 5 push intervals, >= 10 s) and
  our own pings (websockets closes with 1011 "keepalive ping timeout" when no pong comes) turn that into a
  reconnect counted as ``stale``. Server pings are answered by websockets itself.
- *Rotation, make before break*: Binance closes every connection at 24 h. Before that
  (``settings.rotate_after_s``) we open the replacement with the same streams, wait for its first data
  frame, and only then close the old one, so there is no gap; during the overlap both deliver and the
  pipeline drops duplicates per symbol by event time. One connection slot is kept free for this
  (``streams.usable_connections``) and rotations run one at a time, so we never exceed max_connections.
- *Frame size*: the client accepts frames up to ``2 x settings.max_frame_bytes``. Frames between 1x and 2x
  reach the parser, which sends them to the dead-letter topic with their bytes (so an operator can see what
  Binance sent); frames above 2x are refused by websockets (close 1009, counted as ``closed``) so a broken
  or hostile peer cannot make us buffer unbounded memory.

The per-frame path does only: two clock reads, a cheap prefix check, one counter increment, and
``await on_frame(frame, meta)``. Everything else (reconnects, subscriptions, notifications) runs in other
tasks, so a reconnect never blocks frame delivery of the other shards.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ingest import metrics
from ingest.backoff import Backoff
from ingest.binance import streams as st
from ingest.binance.control import MAX_ANSWER_BYTES, ControlChannel, ControlError
from ingest.binance.lifecycle import Connection, ConnState, Shard
from ingest.binance.limits import AttemptBudget, LocationRefusal
from ingest.config import ConfigError, Settings
from ingest.fatal import FatalError

log = logging.getLogger(__name__)

HEALTHY_AFTER_S = 30.0
"""A connection that delivered data this long resets the backoff."""
PING_INTERVAL_S = 20.0
"""Our own pings (capped by the stale deadline), like Binance's server pings: they find dead peers on quiet streams."""
OPEN_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 5.0
ROTATION_RETRY_S = 60.0
"""When a replacement connection fails to deliver, the old one stays and rotation is tried again this much later."""
BAN_DEFAULT_S = 120.0
"""HTTP 418 without Retry-After: Binance's shortest IP ban is 2 minutes."""
SERVER_SHUTDOWN = "server_shutdown"
"""Reconnect reason of a replacement started by Binance's ``serverShutdown`` event."""


class FrameMeta(NamedTuple):
    """Where and when a frame arrived; travels with the frame into the records' ingest metadata."""

    connection_id: str
    received_at: float  # time.time() when the frame was read
    stream: str | None = None  # the combined stream's name, read once here (None on raw /ws/ connections)


OnFrame = Callable[[bytes | str, FrameMeta], Awaitable[None]]
OnConnected = Callable[[str], Awaitable[None]]


def classify_close(exc: BaseException) -> str:
    """The ``ws_reconnects_total{reason}`` label for why a connection ended."""
    if isinstance(exc, ConnectionClosed):
        sent, rcvd = exc.sent, exc.rcvd
        if rcvd is None and sent is not None and sent.code == 1011 and "keepalive" in sent.reason:
            return "stale"  # our ping got no pong in time
        if rcvd is None:
            return "1006" if sent is None else "closed"  # no close frame from the server: abnormal closure
        return str(rcvd.code) if rcvd.code in (1006, 1008, 1011) else "closed"
    status = handshake_status(exc)
    return f"http_{status}" if status in SIGNAL_STATUSES else "error"


SIGNAL_STATUSES = (403, 418, 429, 451)
"""Handshake statuses that are the exchange's signals (each has its own wait, see ``StreamSource._delay``)."""


def handshake_status(exc: BaseException | None) -> int | None:
    """The HTTP status that refused the WebSocket handshake, if that is how the attempt failed."""
    return exc.response.status_code if isinstance(exc, InvalidStatus) else None


def _retry_after(exc: BaseException | None) -> float | None:
    """The handshake response's Retry-After in seconds (None when absent or not a number)."""
    if not isinstance(exc, InvalidStatus):
        return None
    try:
        value = float(exc.response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


def _server_said_slow_down(exc: BaseException | None) -> bool:
    """1008 close or HTTP 429/418/403 on the handshake: the server wants us to back off harder."""
    if isinstance(exc, ConnectionClosed) and exc.rcvd is not None and exc.rcvd.code == 1008:
        return True
    return handshake_status(exc) in (403, 418, 429)


class StreamSource:
    """Keeps the configured streams flowing into ``on_frame`` forever, across drops, stalls and rotations."""

    def __init__(self, settings: Settings, streams: list[str], on_frame: OnFrame,
                 on_connected: OnConnected | None = None, *, refusal: LocationRefusal | None = None,
                 attempts: AttemptBudget | None = None) -> None:
        self.settings = settings
        self.refusal = refusal or LocationRefusal(settings.location_refused_retry_s)
        self.attempts = attempts or AttemptBudget(settings.max_connection_attempts,
                                                  settings.connection_attempt_window_s)
        self._hold_until = 0.0  # monotonic; IP-wide signals (451, 418, Retry-After) hold every shard's attempts
        self._on_frame = on_frame
        self._on_connected = on_connected
        self._desired = [st.normalize(s) for s in streams]
        self._shards: list[Shard] = []
        self._shard_tasks: dict[int, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._rotation_lock: asyncio.Lock | None = None
        self._streams_lock: asyncio.Lock | None = None
        self._shard_index = itertools.count()
        self._request_ids = itertools.count(1)
        self._counters: dict[str, Any] = {}
        self._running = False
        self._fatal: asyncio.Future[None] | None = None  # a FatalError from on_frame ends run() with it
        self.deadline_s = st.stale_deadline_s(self._desired, settings.stale_timeout_s)
        # Fail at construction, not at 3 a.m.: the streams must fit the connection limits. An empty set is
        # allowed: a coordinated replica that owns no shard yet (or a standby) holds no connection.
        if self._desired:
            st.plan_connections(self._desired, settings.max_streams_per_connection, settings.max_connections)

    # ---- public contract -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve every shard until cancelled; never returns on its own and never gives up on a connection.

        Raises the ``FatalError`` that ``on_frame`` raised: the pipeline cannot go on, and a reconnect would
        only hide that (the worker exits and is restarted)."""
        if self._running:
            raise RuntimeError("StreamSource.run() is already running")
        self._running = True
        self._rotation_lock = asyncio.Lock()
        self._streams_lock = asyncio.Lock()
        self._fatal = asyncio.get_running_loop().create_future()
        try:
            plan = st.plan_connections(self._desired, self.settings.max_streams_per_connection,
                                       self.settings.max_connections) if self._desired else []
            for group in plan:
                self._start_shard(group)
            self._update_subscription_gauge()
            await self._fatal  # until cancelled, or until on_frame raised a FatalError (raised here)
        finally:
            await self._shutdown()

    async def set_streams(self, streams: list[str]) -> None:
        """Change the stream set on live connections: UNSUBSCRIBE what went away, SUBSCRIBE what is new into
        shards with room, open new shards when all are full. ConfigError when the new set cannot fit."""
        wanted = list(dict.fromkeys(st.normalize(s) for s in streams))
        if wanted:
            st.plan_connections(wanted, self.settings.max_streams_per_connection, self.settings.max_connections)
        if not self._running:
            self._desired = wanted
            return
        assert self._streams_lock is not None
        async with self._streams_lock:
            await self._apply_streams(wanted)

    @property
    def connected(self) -> bool:
        """Every shard has a connection that is up and delivering data."""
        return bool(self._shards) and all(
            s.current is not None and s.current.state is ConnState.DELIVERING and s.current.live for s in self._shards)

    def status(self) -> list[dict[str, Any]]:
        """One entry per live connection (for /readyz and logs)."""
        out = []
        for shard in self._shards:
            for conn in shard.connections():
                out.append({"id": conn.id, "shard": shard.index, "streams": len(conn.streams),
                            "state": conn.state.value,
                            "role": "replacement" if conn is shard.replacement else "current",
                            "connected_since": conn.connected_since, "last_frame_at": conn.last_frame_at})
        return out

    @property
    def streams(self) -> list[str]:
        """The streams currently wanted, over all shards."""
        if not self._running:
            return list(self._desired)
        return [s for shard in self._shards for s in shard.streams]

    # ---- shards ----------------------------------------------------------------------------------------

    def _start_shard(self, group: list[str]) -> Shard:
        shard = Shard(index=next(self._shard_index), streams=list(group),
                       backoff=Backoff(self.settings.backoff_initial_s, self.settings.backoff_max_s,
                                       slow_s=self.settings.backoff_slow_s))
        self._shards.append(shard)
        self._shard_tasks[shard.index] = asyncio.create_task(self._supervise(shard), name=f"ws-shard-{shard.index}")
        return shard

    async def _stop_shard(self, shard: Shard) -> None:
        shard.removed = True
        self._shards.remove(shard)
        task = self._shard_tasks.pop(shard.index)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for conn in shard.connections():
            await self._finish(conn, "closed")
        shard.current = shard.replacement = None

    async def _supervise(self, shard: Shard) -> None:
        """Connect, serve, and reconnect this shard forever."""
        while not shard.removed:
            exc: BaseException | None
            try:
                reason, exc = await self._serve(shard)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not kill the shard: log it, count it, back off, go on
                log.exception("websocket shard %s failed unexpectedly", shard.index,
                              extra={"shard": shard.index, "reason": "error"})
                reason, exc = "error", None
            if reason in ("rotation", SERVER_SHUTDOWN):  # break-then-make (single-connection setups): now
                continue
            delay = self._delay(shard, exc)
            metrics.WS_RECONNECTS.labels(reason).inc()
            log.warning("websocket shard %s reconnecting in %.1f s (reason %s)", shard.index, delay, reason,
                        extra={"shard": shard.index, "reason": reason, "delay_s": round(delay, 3),
                               "streams": len(shard.streams)})
            await asyncio.sleep(delay)

    def _delay(self, shard: Shard, exc: BaseException | None) -> float:
        """The wait before the shard's next attempt (docs/connection.md, "Reconnect policy"): the ordinary
        backoff, or longer when the exchange said so. Signals about the IP (451, 418, a Retry-After) hold every
        shard, since Binance answers them per IP; 1008 is about this connection's messages."""
        status = handshake_status(exc)
        if status == 451:
            delay = random.uniform(1.0, 1.1) * self.refusal.retry_s  # jitter: replicas do not retry in step
        else:
            if _server_said_slow_down(exc):
                shard.backoff.slow_down()
            delay = shard.backoff.next_delay()
            retry_after = _retry_after(exc)
            if retry_after is None and status == 418:
                retry_after = BAN_DEFAULT_S
            if retry_after is None:
                return delay
            delay = max(delay, retry_after)
        self._hold_until = max(self._hold_until, time.monotonic() + delay)
        return delay

    async def _serve(self, shard: Shard) -> tuple[str, BaseException | None]:
        """Open one connection and serve it (replacing it when due or announced) until it ends; returns
        (reason, the exception that ended it)."""
        conn = self._new_connection(shard)
        shard.current = conn
        try:
            await self._open(conn)
        except Exception as exc:
            reason = classify_close(exc)
            await self._finish(conn, reason)
            shard.current = None
            if handshake_status(exc) == 451:
                self.refusal.refuse("websocket", "the WebSocket handshake", _body(exc))
            else:
                log.warning("websocket %s could not connect: %s", conn.id, _describe(exc),
                            extra={"connection_id": conn.id, "streams": len(conn.streams), "reason": reason})
            return reason, _without_traceback(exc)
        self.refusal.accept("websocket")
        rotate_at = conn.opened_mono + self.settings.rotate_after_s
        retry_at = 0.0  # an announced shutdown whose replacement failed is tried again no sooner than this
        while True:
            current = shard.current
            assert current is not None
            announced = current.shutdown.is_set()
            await self._wait_end(current, min(rotate_at, retry_at) if announced else rotate_at)
            if not current.ended.done():
                announced = current.shutdown.is_set()
                now = time.monotonic()
                if now < rotate_at and (not announced or now < retry_at):
                    continue
                why = SERVER_SHUTDOWN if announced else "rotation"
                if st.usable_connections(self.settings.max_connections) == self.settings.max_connections:
                    await self._finish(current, why)  # no spare slot: break, then make
                    metrics.WS_RECONNECTS.labels(why).inc()
                    return why, None
                failure = await self._rotate(shard, why)
                if failure is None:
                    assert shard.current is not None  # the replacement
                    rotate_at = shard.current.opened_mono + self.settings.rotate_after_s
                elif announced:  # the server closes the old one soon anyway: try again after the policy's delay
                    retry_at = time.monotonic() + self._delay(shard, failure)
                else:
                    rotate_at = time.monotonic() + min(ROTATION_RETRY_S, self.settings.rotate_after_s)
                continue
            reason = current.ended.result()
            healthy = (current.connected_since is not None
                       and time.time() - current.connected_since >= HEALTHY_AFTER_S)
            if healthy:
                shard.backoff.reset()
            close_exc = current.close_exc  # read before _finish: the connection drops it once its reader ended
            await self._finish(current, reason)
            shard.current = None
            log.warning("websocket %s ended (reason %s)", current.id, reason,
                        extra={"connection_id": current.id, "reason": reason, "streams": len(current.streams)})
            return reason, None if close_exc is None else _without_traceback(close_exc)

    @staticmethod
    async def _wait_end(conn: Connection, until_mono: float) -> None:
        """Wait until the connection ends, announces a shutdown (if it has not yet), or ``until_mono``."""
        waiters: set[asyncio.Future[Any]] = {conn.ended}
        announced = None
        if not conn.shutdown.is_set():
            announced = asyncio.ensure_future(conn.shutdown.wait())
            waiters.add(announced)
        try:
            await asyncio.wait(waiters, timeout=max(0.0, until_mono - time.monotonic()),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            if announced is not None:
                announced.cancel()

    async def _rotate(self, shard: Shard, why: str = "rotation") -> BaseException | None:
        """Make before break: a replacement with the same streams must deliver before the old one closes.
        ``why`` is ``rotation`` (the 24 h limit is near) or ``server_shutdown`` (the server announced it).
        Returns None when replaced, else why the replacement failed (the old connection stays)."""
        assert self._rotation_lock is not None
        async with self._rotation_lock:  # one rotation at a time: at most one connection above the shard count
            old = shard.current
            assert old is not None
            new = self._new_connection(shard)
            shard.replacement = new
            log.info("websocket %s replacing it by %s (%s)", old.id, new.id, why,
                     extra={"connection_id": old.id, "replacement": new.id, "streams": len(shard.streams),
                            "reason": why})
            try:
                await self._open(new)
                self.refusal.accept("websocket")
                await asyncio.wait_for(new.first_data.wait(), self.deadline_s)
            except Exception as exc:
                await self._finish(new, "error")
                shard.replacement = None
                if handshake_status(exc) == 451:
                    self.refusal.refuse("websocket", "the WebSocket handshake", _body(exc))
                log.warning("websocket %s: replacement %s failed (%s); keeping the old connection", old.id, new.id,
                            _describe(exc), extra={"connection_id": old.id, "reason": why})
                return _without_traceback(exc)
            shard.current, shard.replacement = new, None
            await self._finish(old, why)
            metrics.WS_RECONNECTS.labels(why).inc()
            log.info("websocket %s replaced by %s", old.id, new.id,
                     extra={"connection_id": old.id, "replacement": new.id, "reason": why})
            return None

    def _new_connection(self, shard: Shard) -> Connection:
        conn_id = f"ws{shard.index}-{next(shard.generation)}"
        conn = Connection(id=conn_id, shard=shard, control=ControlChannel(conn_id, self._request_ids), streams=[])
        metrics.track_connection(conn)
        return conn

    # ---- one connection --------------------------------------------------------------------------------

    async def _open(self, conn: Connection) -> None:
        """Connect with the first streams in the URL, start reading, SUBSCRIBE the rest, start the watchdog.
        Holds the shard lock so set_streams() never races with a half-subscribed connection. Before that, the
        attempt waits out an IP-wide hold (451, 418, Retry-After) and books itself in the attempt budget."""
        shard = conn.shard
        hold = self._hold_until - time.monotonic()
        if hold > 0:
            await asyncio.sleep(hold)
        await self.attempts.acquire(conn.id)
        async with shard.lock:
            in_url, rest = st.split_for_url(shard.streams)
            url = st.build_url(self.settings.ws_url, in_url, self.settings.combined)
            conn.streams = list(in_url)
            conn.opened_mono = conn.last_frame_mono = time.monotonic()
            log.info("websocket %s connecting with %d streams", conn.id, len(shard.streams),
                     extra={"connection_id": conn.id, "streams": len(shard.streams)})
            ping = min(PING_INTERVAL_S, self.deadline_s)
            conn.ws = await connect(url, open_timeout=OPEN_TIMEOUT_S, ping_interval=ping, ping_timeout=self.deadline_s,
                                    close_timeout=CLOSE_TIMEOUT_S, max_size=2 * self.settings.max_frame_bytes,
                                    user_agent_header="binance-ingest")
            conn.advance(ConnState.SUBSCRIBING)
            self._set_raw_counter(conn)
            conn.tasks.append(asyncio.create_task(self._read(conn), name=f"ws-read-{conn.id}"))
            conn.tasks.append(asyncio.create_task(self._watchdog(conn), name=f"ws-watchdog-{conn.id}"))
            if rest:
                await conn.control.request(conn.ws, "SUBSCRIBE", rest)
                conn.streams.extend(rest)
                self._set_raw_counter(conn)
            conn.subscribed()
        self._spawn(self._announce(conn))

    async def _read(self, conn: Connection) -> None:
        """The hot loop: read a frame, stamp it, count it, hand it over. Ends by resolving ``conn.ended``."""
        ws = conn.ws
        assert ws is not None
        on_frame = self._on_frame
        combined = self.settings.combined
        try:
            while True:
                # Undecoded: websockets would close with 1007 on a text frame that is not UTF-8, dropping the
                # connection and everything queued behind that frame; we decode ourselves (the same cost) and
                # let the parser dead-letter the bytes as invalid_utf8.
                raw = await ws.recv(decode=False)
                try:
                    frame: str | bytes = raw.decode()
                except UnicodeDecodeError:
                    frame = raw
                now = time.time()
                conn.last_frame_mono = time.monotonic()
                conn.last_frame_at = now
                name = None
                if combined:
                    name = st.combined_stream_name(frame)
                    if name is None and self._handle_control(conn, frame):
                        continue
                    if name == "!serverShutdown":
                        self._server_shutdown(conn, frame)
                        continue
                    self._counter(name or "other").inc()
                else:
                    if frame[:1] == "{" and self._handle_control(conn, frame):
                        continue
                    conn.raw_counter.inc()
                if not conn.first_data.is_set():
                    self._mark_delivering(conn, now)
                conn.handling = True
                try:
                    await on_frame(frame, FrameMeta(conn.id, now, name))
                except FatalError as exc:  # the pipeline cannot go on: end run() with it, no reconnect
                    if self._fatal is not None and not self._fatal.done():
                        self._fatal.set_exception(exc)
                    return  # the connection is closed by run()'s shutdown, not counted as a reconnect
                except Exception:  # a pipeline bug on this frame: not the connection's fault, it stays
                    metrics.FRAMES_FAILED.labels(st.metric_label(name) if name else "other").inc()
                    log.exception("websocket %s: frame handling failed; frame lost", conn.id,
                                  extra={"connection_id": conn.id, "stream": name})
                finally:
                    conn.handling = False
        except ConnectionClosed as exc:
            conn.close_exc = exc
            _resolve(conn.ended, classify_close(exc))

    async def _watchdog(self, conn: Connection) -> None:
        """No frame (data or control response) within the deadline: the connection is dead, end it as stale."""
        check = min(1.0, self.deadline_s / 4)
        while not conn.ended.done():
            await asyncio.sleep(check)
            if conn.handling:  # backpressure from Kafka: the deadline starts again once the frame is handled
                conn.last_frame_mono = time.monotonic()
                continue
            silent = time.monotonic() - conn.last_frame_mono
            if silent > self.deadline_s and not conn.ended.done():
                log.warning("websocket %s silent for %.1f s (deadline %.1f s)", conn.id, silent, self.deadline_s,
                            extra={"connection_id": conn.id, "reason": "stale", "streams": len(conn.streams)})
                _resolve(conn.ended, "stale")
                return

    def _mark_delivering(self, conn: Connection, now: float) -> None:
        if conn.state is ConnState.CLOSED:
            return  # a last frame read after we gave the connection up
        conn.first_data.set()
        conn.connected_since = now
        if conn.state is ConnState.WAITING:
            conn.advance(ConnState.DELIVERING)
        metrics.WS_CONNECTED.inc()

    async def _announce(self, conn: Connection) -> None:
        """Once the connection delivers (and its subscriptions are in), tell the pipeline (REST snapshot)."""
        waiter: asyncio.Future[Any] = asyncio.ensure_future(conn.first_data.wait())
        ended: asyncio.Future[Any] = conn.ended
        try:
            await asyncio.wait({waiter, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if conn.ended.done():
            return
        if conn.state is ConnState.WAITING:
            conn.advance(ConnState.DELIVERING)
        log.info("websocket %s delivering %d streams", conn.id, len(conn.streams),
                 extra={"connection_id": conn.id, "streams": len(conn.streams)})
        if self._on_connected is not None:
            try:
                await self._on_connected(conn.id)
            except FatalError as exc:  # e.g. the snapshot's produce met a fatal producer error: end run()
                if self._fatal is not None and not self._fatal.done():
                    self._fatal.set_exception(exc)
            except Exception:
                log.exception("on_connected(%s) failed", conn.id, extra={"connection_id": conn.id})

    async def _finish(self, conn: Connection, reason: str) -> None:
        """Close a connection for good: close the socket (abort when the peer is dead) and stop the watchdog.

        The reader task is not cancelled: it may be inside ``on_frame`` and cancelling the pipeline halfway
        through a frame would be worse than letting it finish; once the socket is closed its ``recv()``
        raises and it ends by itself (``_shutdown`` cancels stragglers)."""
        _resolve(conn.ended, reason)
        if not conn.advance(ConnState.CLOSED):
            return
        if conn.first_data.is_set():
            metrics.WS_CONNECTED.dec()
        conn.control.close(reason)
        current = asyncio.current_task()
        for task in conn.tasks[1:]:  # the watchdog
            if task is not current:
                task.cancel()
        if conn.tasks and not conn.tasks[0].done():
            self._background.add(conn.tasks[0])
            conn.tasks[0].add_done_callback(self._background.discard)
            conn.tasks[0].add_done_callback(lambda _task: _release(conn))
        else:
            _release(conn)
        ws = conn.ws
        if ws is not None:
            if reason == "stale":
                ws.transport.abort()  # a dead peer would only make close() wait for its timeout
            else:
                with contextlib.suppress(Exception):
                    await ws.close()

    # ---- subscriptions ---------------------------------------------------------------------------------

    def _handle_control(self, conn: Connection, frame: str | bytes) -> bool:
        """True when the frame is not data: an answer to our SUBSCRIBE/UNSUBSCRIBE (the connection's control
        channel takes it) or, on raw connections, the ``serverShutdown`` event."""
        if (not self.settings.combined and isinstance(frame, str) and len(frame) <= MAX_ANSWER_BYTES
                and '"serverShutdown"' in frame):  # raw {"e":"serverShutdown","E":...}
            return self._server_shutdown(conn, frame)
        return conn.control.answer(frame)

    def _server_shutdown(self, conn: Connection, frame: str | bytes) -> bool:
        """Binance announced it will close this connection (``serverShutdown``, since 2026-05): the shard's
        supervisor replaces it at once, make before break. The event is never a data frame (no dead letter).
        False when the frame only mentions the word (the parser then judges it)."""
        try:
            event = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return False
        if isinstance(event, dict) and isinstance(event.get("data"), dict):
            event = event["data"]
        if not isinstance(event, dict) or event.get("e") != "serverShutdown":
            return False
        metrics.WS_SERVER_SHUTDOWNS.inc()
        if not conn.shutdown.is_set():
            log.info("websocket %s: server announced shutdown (E=%s); replacing the connection now", conn.id,
                     event.get("E"), extra={"connection_id": conn.id, "reason": SERVER_SHUTDOWN})
        conn.shutdown.set()
        return True

    async def _apply_streams(self, wanted: list[str]) -> None:
        current = {s for shard in self._shards for s in shard.streams}
        wanted_set = set(wanted)
        removed = current - wanted_set
        added = [s for s in wanted if s not in current]
        for shard in list(self._shards):
            gone = [s for s in shard.streams if s in removed]
            if not gone:
                continue
            if len(gone) == len(shard.streams):
                await self._stop_shard(shard)
                continue
            async with shard.lock:
                shard.streams = [s for s in shard.streams if s not in removed]
                await self._control_live(shard, "UNSUBSCRIBE", gone)
        cap = self.settings.max_streams_per_connection
        for shard in self._shards:
            room = cap - len(shard.streams)
            if room <= 0 or not added:
                continue
            take, added = added[:room], added[room:]
            async with shard.lock:
                shard.streams.extend(take)
                await self._control_live(shard, "SUBSCRIBE", take)
        while added:
            if len(self._shards) >= st.usable_connections(self.settings.max_connections):
                raise ConfigError(f"{len(added)} more streams do not fit in --max-connections "
                                  f"{self.settings.max_connections} x --max-streams-per-connection {cap}")
            self._start_shard(added[:cap])
            added = added[cap:]
        self._update_subscription_gauge()
        log.info("streams changed: %d removed, %d total on %d connections", len(removed),
                 sum(len(s.streams) for s in self._shards), len(self._shards),
                 extra={"streams": sum(len(s.streams) for s in self._shards)})

    async def _control_live(self, shard: Shard, method: str, names: list[str]) -> None:
        """Apply a change to every live connection of the shard; a connection that fails it is ended
        (reason ``error``) and comes back with the shard's full stream list."""
        for conn in shard.connections():
            if not conn.live or conn.state in (ConnState.CONNECTING, ConnState.CLOSED):
                continue
            assert conn.ws is not None
            try:
                await conn.control.request(conn.ws, method, names)
            except (ConnectionClosed, ControlError, TimeoutError) as exc:
                log.warning("websocket %s: %s failed (%s); reconnecting it", conn.id, method, _describe(exc),
                            extra={"connection_id": conn.id, "reason": "error"})
                _resolve(conn.ended, "error")
                continue
            if method == "SUBSCRIBE":
                conn.streams.extend(names)
            else:
                conn.streams = [s for s in conn.streams if s not in set(names)]
            self._set_raw_counter(conn)

    # ---- small helpers ---------------------------------------------------------------------------------

    def _counter(self, stream: str) -> Any:
        child = self._counters.get(stream)
        if child is None:
            child = self._counters[stream] = metrics.WS_MESSAGES.labels(
                st.metric_label(stream) if stream != "other" else "other")
        return child

    def _set_raw_counter(self, conn: Connection) -> None:
        """Raw frames carry no stream name: count them under the connection's label when all its streams
        share one (the usual case), else under ``raw``."""
        labels = {st.metric_label(s) for s in conn.streams}
        label = labels.pop() if len(labels) == 1 else "raw"
        conn.raw_counter = metrics.WS_MESSAGES.labels(label)

    def _update_subscription_gauge(self) -> None:
        metrics.WS_SUBSCRIPTIONS.set(sum(len(s.streams) for s in self._shards))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _shutdown(self) -> None:
        self._desired = self.streams  # a later run() starts with what was last set
        for shard in list(self._shards):
            shard.removed = True
            task = self._shard_tasks.pop(shard.index, None)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for conn in shard.connections():
                await self._finish(conn, "closed")
        self._shards.clear()
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(list(self._background), timeout=CLOSE_TIMEOUT_S)
        self._update_subscription_gauge()
        self._running = False


def _release(conn: Connection) -> None:
    """Break the reference cycles of a finished connection once its reader ended, so reference counting frees
    it at once instead of the cyclic GC much later (the ``ws_connection_objects`` gauge then stays flat): its
    tasks (a cancelled watchdog keeps its CancelledError, whose traceback holds the frame that holds ``conn``)
    and the exception that closed it (same: its traceback reaches the reader's frame)."""
    conn.tasks = []
    conn.close_exc = None


def _without_traceback(exc: BaseException) -> BaseException:
    """``exc`` for deciding the next delay, without its traceback: the traceback holds the frames that hold the
    connection (and, in an ``except ... as exc`` that returns it, ``exc`` itself: a cycle). Only the type,
    status, headers and message are read later; nothing logs it with a traceback."""
    return exc.with_traceback(None)


def _resolve(fut: asyncio.Future[str], reason: str) -> None:
    if not fut.done():
        fut.set_result(reason)


def _body(exc: BaseException) -> str:
    """The start of a refused handshake's response body (Binance and CDNs explain the refusal there)."""
    body = exc.response.body if isinstance(exc, InvalidStatus) else None
    return body[:200].decode("utf-8", "replace") if body else ""


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:200] + "..."
