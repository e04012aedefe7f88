"""``ingest run``: the connector process, wiring sources -> pipeline -> Kafka, with seeding and shutdown.

Start-up order matters for operators: settings are checked first (bad config exits 2 with one line),
the metrics server comes up next (so /healthz answers during slow starts), then the registry and topics
(retried with backoff when unreachable: a registry outage at start is a wait, not a crash loop), then
exchangeInfo, then the streams. SIGTERM stops reading, flushes within the grace period and exits 0.

With ``--coordination kafka`` the replica streams only the shards it owns (``ingest.coordination``): it starts
with no connection, and every ownership change re-derives its stream set. A gained shard is restored from a
REST snapshot before its streams are subscribed; a lost one is gated off at once and flushed, so its next
owner's records follow ours in every partition. SIGTERM leaves the group first, so the shards move before
the process exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterable
from typing import Any

from ingest import avro, heap, metrics
from ingest import config as config_mod
from ingest.binance import streams as stream_names
from ingest.binance.connection import FrameMeta, StreamSource
from ingest.binance.limits import LocationRefusal
from ingest.binance.rest import RestClient, RestError
from ingest.config import ConfigError, Settings
from ingest.coordination import ShardCoordinator, ensure_coordination_topic, owned_streams, shard_of
from ingest.fatal import EXIT_FATAL, FatalError
from ingest.handover import Handover
from ingest.kafka.producer import KafkaSink
from ingest.kafka.topics import (
    KnownSymbols,
    admin_client,
    client_config,
    kafka_unreachable,
    publish_symbols,
    topics_or_config_error,
)
from ingest.listings import Listings, Publish
from ingest.logs import setup_logging
from ingest.pipeline import Pipeline
from ingest.restore import Snapshots

log = logging.getLogger("ingest.worker")

# Delivery reports are served by polling: often while records are in flight (each poll that comes late adds
# to the measured event lag), rarely when nothing is (an idle worker should cost nothing).
POLL_BUSY_S = 0.005
POLL_IDLE_S = 0.05
RELEASE_ACK_WAIT_S = 5.0
"""A revoked shard's records in flight get this long to be acknowledged before its new owner may start."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config_mod.add_arguments(parser)


def main(args: argparse.Namespace) -> int:
    settings = config_mod.load(args)
    config_mod.require_kafka(settings)
    setup_logging(settings.log_format, settings.log_level)
    try:
        return asyncio.run(Worker(settings).run())
    except FatalError as exc:  # after the producer was flushed as far as it could be (Worker.run's finally)
        log.critical("%s; exiting with code %d so the orchestrator restarts the worker", exc, EXIT_FATAL,
                     extra={"reason": str(exc), "exit_code": EXIT_FATAL})
        return EXIT_FATAL


def probe_registry(client: Any, url: str) -> None:
    """One read-only request (GET /subjects): a wrong URL fails here in one line, before anything is registered.

    Connection errors and 5xx are raised as they are (the caller retries them: an outage at start is a wait).
    """
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    try:
        client.get_subjects()
    except SchemaRegistryError as exc:
        if avro.is_retryable(exc):
            raise
        hint = ("; Apicurio serves the Confluent API under /apis/ccompat/v7"
                if exc.http_status_code == 404 and "/apis/ccompat/" not in url else "")
        detail = f" ({exc.error_message})" if exc.error_message else ""
        raise ConfigError(f"--schema-registry-url {url}: GET /subjects answered {exc.http_status_code}{detail}{hint}"
                          ) from None


def check_symbols_exist(streams: list[str], exchange_info: dict[str, Any], rest_url: str) -> None:
    """A per-symbol stream whose symbol exchangeInfo does not list at all is a typo: refuse it at start.

    (Binance would accept the subscription and send nothing, and the stale timeout would reconnect forever.)
    A listed symbol that is not TRADING is accepted: it streams again when it trades again.
    """
    listed = {str(entry.get("symbol", "")).upper() for entry in exchange_info.get("symbols", ())}
    unknown = [name for name in streams
               if name not in stream_names.ALL_MARKET and stream_names.symbol(name) not in listed]
    if unknown:
        more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
        raise ConfigError(f"--streams: {unknown[0]}{more}: symbol {stream_names.symbol(unknown[0])} is not in "
                          f"exchangeInfo of {rest_url}; check the spelling (e.g. btcusdt@ticker)")


def _registry_retryable(exc: BaseException) -> bool:
    """Registry errors worth retrying at start, plus one race: replicas starting together may both create the
    subject's compatibility rule, and the loser gets 409 "rule already exists"; its retry finds the rule."""
    return avro.is_retryable(exc) or (getattr(exc, "http_status_code", None) == 409
                                      and "already exists" in str(exc))


class Worker:
    """One connector process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sink: KafkaSink | None = None
        self.source: StreamSource | None = None
        self.pipeline: Pipeline | None = None
        self.refusal = LocationRefusal(settings.location_refused_retry_s)  # HTTP 451, shared by REST and streams
        self.rest = RestClient(settings, refusal=self.refusal)
        self.listings = Listings(settings, self.rest)  # exchangeInfo: symbols topic, stream patterns
        self.snapshots: Snapshots | None = None  # REST state after (re)connects and gains
        self.handover: Handover | None = None  # notes between coordinated replicas
        self.publish: Publish | None = None  # symbol records to Kafka
        self.stop_event = asyncio.Event()
        self.metrics_port = 0
        self.all_streams: list[str] = []  # every stream the settings ask for; a coordinated replica owns a part
        self.coordinator: ShardCoordinator | None = None
        self._stream_shards: dict[str, int] = {}  # lower-cased stream name as frames carry it -> shard
        self._unserved = ""  # why owned shards are not streamed (readiness reason), empty when they are
        self._start_wait = ""  # what start-up is waiting for (readiness reason), e.g. the registry being down

    # ----- readiness -----
    def readiness(self) -> tuple[bool, dict[str, Any]]:
        reasons = [self._start_wait] if self._start_wait else []
        extra: dict[str, Any] = {}
        coordinator = self.coordinator
        if coordinator is not None:
            extra = {"shards_owned": sorted(coordinator.owned), "shards": coordinator.shards,
                     "streams": len(self.source.streams) if self.source is not None else 0}
            if not coordinator.joined:
                reasons.append("coordination: not yet a member of the group")
            if self._unserved:
                reasons.append(self._unserved)
        if self.refusal.refused:
            reasons.append(self.refusal.reason())
        owns_streams = self.source is not None and bool(self.source.streams)
        if self.source is None or ((coordinator is None or owns_streams) and not self.source.connected):
            reasons.append("binance: not all connections are delivering")
        if self.sink is None:
            reasons.append("kafka: producer not started")
        elif not self.sink.broker_up:
            reasons.append(f"kafka: brokers unreachable ({self.sink.last_error})")
        ready = not reasons  # MetricsServer exports this as binance_ingest_ready on every scrape
        return ready, {"ready": ready, "reasons": reasons, **extra}

    # ----- lifecycle -----
    async def run(self) -> int:
        s = self.settings
        metrics.set_build_info()
        metrics.SHARDS_OWNED.set(1 if s.coordination == "off" else 0)
        server = metrics.MetricsServer(s.metrics_host, s.metrics_port, self.readiness)
        try:
            self.metrics_port = server.start()
        except OSError as exc:
            raise ConfigError(f"--metrics-port {s.metrics_port} on {s.metrics_host}: {exc.strerror}; pick a free "
                              "port with --metrics-port (0 = any free port)") from None
        log.info("worker starting", extra={"metrics_port": self.metrics_port, "settings": s.redacted()})
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        try:
            if await self._starting():
                await self._serve()
        finally:
            await self._shutdown()
            server.stop()
        return 0

    async def _starting(self) -> bool:
        """Run the start-up steps, which may wait long for Kafka or the registry; SIGTERM ends the wait."""
        start = asyncio.create_task(self._start(), name="start")
        stopper = asyncio.create_task(self.stop_event.wait(), name="stop")
        await asyncio.wait([start, stopper], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not start.done():
            start.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await start
            log.info("stopped during start-up")
            return False
        start.result()  # re-raise a start-up failure
        return True

    async def _start(self) -> None:
        s = self.settings
        # Read-only checks first: a mistake (unknown symbol, wrong registry path) stops the start before any topic
        # is created or schema registered.
        exchange_info = await self._exchange_info_at_start()
        wanted_streams = self.listings.expand(exchange_info)
        check_symbols_exist(wanted_streams, exchange_info, s.rest_url)
        topics = {kind: s.topic(kind) for kind in ("miniticker", "ticker", "symbols")}
        client = avro.make_client(s.schema_registry_url, s.schema_registry_user_info)
        await avro.retry_with_backoff_async(
            lambda: probe_registry(client, s.schema_registry_url), what="schema registration",
            initial_s=s.backoff_initial_s, max_s=s.backoff_max_s, retryable=self._waiting("registry", s))
        encoders = await avro.retry_with_backoff_async(
            lambda: avro.register_schemas(client, topics), what="schema registration",
            initial_s=s.backoff_initial_s, max_s=s.backoff_max_s, retryable=self._waiting("registry", s))
        self._start_wait = ""
        admin = admin_client(s)
        await avro.retry_with_backoff_async(lambda: topics_or_config_error(admin, s, timeout_s=10.0),
                                            what="topic seeding", initial_s=s.backoff_initial_s,
                                            max_s=s.backoff_max_s, retryable=kafka_unreachable)
        if s.coordination == "kafka":
            shards = await avro.retry_with_backoff_async(
                lambda: ensure_coordination_topic(admin, s), what="coordination topic",
                initial_s=s.backoff_initial_s, max_s=s.backoff_max_s, retryable=kafka_unreachable)
            self.coordinator = ShardCoordinator(s, client_config(s), shards, self._on_shards_changed)
            metrics.COORDINATION_SHARDS.set(shards)
        self.sink = KafkaSink(s)
        self._set_all_streams(wanted_streams)
        retired = [name for name in s.streams if name.strip() in stream_names.RETIRED_ALL_MARKET]
        if retired and not s.literal_ticker_arr:
            pattern, since = stream_names.RETIRED_ALL_MARKET[retired[0].strip()]
            log.warning("%s was retired by Binance on %s (it is accepted but never sends): serving it as "
                        "<symbol>%s for every TRADING symbol; --literal-ticker-arr subscribes it as is",
                        retired[0].strip(), since, pattern,
                        extra={"stream": retired[0].strip(), "retired": since,
                               "streams": sum(1 for n in self.all_streams if n.endswith(pattern))})
        sink, symbols_encoder = self.sink, encoders["symbols"]

        async def publish(known: KnownSymbols, names: Iterable[str]) -> int:
            return await publish_symbols(sink, symbols_encoder, s, known, names)

        self.publish = publish
        self.pipeline = Pipeline(s, self.sink, encoders, self.all_streams)
        seen = self.pipeline.seen
        metrics.watch_runtime(asyncio.get_running_loop(), seen.size)
        coordinator = self.coordinator
        self.snapshots = Snapshots(self.rest, self.pipeline.on_snapshot, owned=None if coordinator is None else (
            lambda streams: owned_streams(streams, coordinator.owned, coordinator.shards)),
            left=self.listings.recently_left)
        if coordinator is not None:
            self.handover = Handover(coordinator, seen, coordinator.shards)
        await self.listings.apply(exchange_info, publish, on_streams=None)
        on_frame = self.pipeline.on_frame if self.coordinator is None else self._on_owned_frame
        self.pipeline.track_streams(self._my_streams())
        self.source = StreamSource(s, self._my_streams(), on_frame, on_connected=self._on_connected,
                                   refusal=self.refusal)

    async def _exchange_info_at_start(self) -> dict[str, Any]:
        """exchangeInfo before anything else. While Binance refuses this location (HTTP 451) the process stays
        up with /readyz naming the refusal, and the REST client holds every request for
        --location-refused-retry-s, so this loop retries slowly. When Binance cannot be reached at all, one line
        naming the URL ends the start."""
        while True:
            try:
                return await self.rest.exchange_info()
            except RestError as exc:
                if exc.status == 451:
                    continue
                raise ConfigError(f"Binance REST {self.settings.rest_url} unreachable at start ({exc}); check the "
                                  "network and --rest-url") from None
            except OSError as exc:
                raise ConfigError(f"Binance REST {self.settings.rest_url} unreachable at start ({exc}); check the "
                                  "network and --rest-url") from None

    def _waiting(self, what: str, s: Settings) -> Callable[[BaseException], bool]:
        """A ``retryable`` for start-up retries that also tells /readyz what start-up waits for."""
        def retryable(exc: BaseException) -> bool:
            ok = _registry_retryable(exc)
            if ok:
                self._start_wait = f"{what}: {s.schema_registry_url} unreachable ({type(exc).__name__})"
            return ok
        return retryable

    async def _serve(self) -> None:
        assert self.source is not None
        tasks = [asyncio.create_task(self.source.run(), name="streams"),
                 asyncio.create_task(self._poll_loop(), name="producer-poll"),
                 asyncio.create_task(self._follow_listings(), name="exchange-info-refresh")]
        if heap.available():
            tasks.append(asyncio.create_task(self._trim_heap_loop(), name="heap-trim"))
        if self.coordinator is not None:
            tasks.append(asyncio.create_task(self.coordinator.run(), name="coordination"))
        stopper = asyncio.create_task(self.stop_event.wait(), name="stop")
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        if self.coordinator is not None:
            # Leave the group while the streams and the poll loop still run: the revoke releases every shard
            # (gate closed, records acknowledged), then the group hands them to the other replicas at once.
            await self.coordinator.leave()
            await asyncio.to_thread(self.coordinator.close_clients)
        for task in [*tasks, stopper]:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for task in done:
            if task is not stopper and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def _shutdown(self) -> None:
        """Flush within the grace period; whatever is still unacknowledged then is counted as dropped, under
        ``kafka_fatal`` when the producer hit a fatal error (it can deliver nothing more), else
        ``shutdown_timeout``. A fatal error raised by the flush itself ends the worker after that count."""
        if self.sink is None:
            return
        grace = self.settings.shutdown_grace_s
        log.info("flushing producer", extra={"in_flight": self.sink.in_flight, "grace_s": grace})
        fatal: FatalError | None = None
        try:
            await asyncio.to_thread(self.sink.flush, grace)
        except FatalError as exc:
            fatal = exc
        lost = 0
        if self.sink.in_flight:
            reason = "kafka_fatal" if self.sink.fatal_error is not None else "shutdown_timeout"
            lost = self.sink.abandon(reason)
            log.error("records not acknowledged: the producer hit a fatal error" if reason == "kafka_fatal"
                      else "records not acknowledged before the grace period ended",
                      extra={"dropped": lost, "reason": reason})
        log.info("worker stopped", extra={"acked": self.sink.acked, "failed": self.sink.failed, "abandoned": lost})
        if fatal is not None:
            raise fatal

    async def _trim_heap_loop(self) -> None:
        """Once a minute, hand memory freed after a burst back to the OS (``ingest.heap`` says why)."""
        while True:
            await asyncio.sleep(heap.TRIM_INTERVAL_S)
            await asyncio.to_thread(heap.trim)

    async def _poll_loop(self) -> None:
        """Serve delivery reports even when no frames arrive (Kafka outage recovery, idle streams)."""
        assert self.sink is not None
        while True:
            self.sink.poll()
            await asyncio.sleep(POLL_BUSY_S if self.sink.in_flight else POLL_IDLE_S)

    # ----- coordination -----
    def _set_all_streams(self, streams: list[str]) -> None:
        """Every stream the settings ask for (patterns expanded), and the frame gate's map of their shards."""
        self.all_streams = streams
        if self.coordinator is not None:
            self._stream_shards = {stream_names.frame_key(name): shard_of(name, self.coordinator.shards)
                                   for name in streams}

    def _my_streams(self) -> list[str]:
        """The streams this replica should hold: all of them, or the part its shards own."""
        if self.coordinator is None:
            return list(self.all_streams)
        return owned_streams(self.all_streams, self.coordinator.owned, self.coordinator.shards)

    async def _on_owned_frame(self, frame: bytes | str, meta: FrameMeta) -> None:
        """The frame gate of a coordinated replica: a revoked shard's frames stop here at once, even before
        its UNSUBSCRIBE is answered. Frames of streams we never asked for go on: the parser judges them (and
        dead-letters what is broken), so nothing unexpected disappears under this counter."""
        assert self.coordinator is not None and self.pipeline is not None
        name = meta.stream
        shard = self._stream_shards.get(stream_names.frame_key(name)) if name is not None else None
        if shard is not None and shard not in self.coordinator.owned:
            metrics.FRAMES_NOT_OWNED.inc()
            metrics.TICKERS_NOT_OWNED.inc(frame.count(b'"e":') if isinstance(frame, bytes) else frame.count('"e":'))
            return
        await self.pipeline.on_frame(frame, meta)

    async def _on_shards_changed(self, gained: frozenset[int], lost: frozenset[int]) -> None:
        """Apply an ownership change (runs on the event loop, one change at a time, in order)."""
        assert self.coordinator is not None and self.sink is not None and self.source is not None
        assert self.pipeline is not None and self.handover is not None and self.snapshots is not None
        metrics.SHARDS_OWNED.set(len(self.coordinator.owned))
        if lost:
            unacked = await self._wait_acknowledged(RELEASE_ACK_WAIT_S)
            written = await self.handover.release(lost, self.all_streams)
            log.info("shards released", extra={"lost": sorted(lost), "unacked": unacked, "notes": written})
        wanted = self._my_streams()
        if gained:
            new = owned_streams(wanted, gained, self.coordinator.shards)
            seeds = await self.handover.receive(gained) if new else {}
            if new and self.settings.snapshot_on_connect:
                await self.snapshots.restore(new, f"shards {sorted(gained)} gained", seeds)
        try:
            await self.source.set_streams(wanted)
            self.pipeline.track_streams(wanted)
            self._unserved = ""
        except ConfigError as exc:  # more owned streams than this replica's connection budget holds
            self._unserved = f"coordination: owned streams do not fit: {exc}"
            log.error("owned shards not streamed", extra={"reason": str(exc)})

    async def _wait_acknowledged(self, timeout_s: float) -> int:
        """Let the poll loop serve delivery reports until nothing is in flight; return what still is."""
        assert self.sink is not None
        for _ in range(int(timeout_s / POLL_BUSY_S)):
            if not self.sink.in_flight:
                break
            await asyncio.sleep(POLL_BUSY_S)
        return self.sink.in_flight

    # ----- REST: exchangeInfo and snapshots -----
    async def _on_connected(self, connection_id: str) -> None:
        """After every (re)connect: restore state with a ticker/24hr snapshot. Also after the first connect of
        a gained shard, a moment after its gain snapshot: one more request's weight, and the dedupe drops what
        is not newer. Skipping it would need telling a first connect from a reconnect, which must restore."""
        if not self.settings.snapshot_on_connect or self.source is None:
            return
        assert self.snapshots is not None
        await self.snapshots.restore(self.source.streams, f"connection {connection_id}")

    async def _follow_listings(self) -> None:
        assert self.publish is not None
        await self.listings.follow(self.publish, self._on_listed_streams, self._on_delisted)

    async def _on_delisted(self, symbols: list[str]) -> None:
        """A refresh saw symbols leave TRADING: snapshot their final state now for the all-market streams this
        replica holds (for a coordinated one: whose shard it owns). Their last ticks may have been lost while a
        connection was down, and no later TRADING-only snapshot lists them."""
        if not self.settings.snapshot_on_connect or self.source is None or self.snapshots is None:
            return
        streams = [name for name in self._my_streams() if name in stream_names.ALL_MARKET]
        await self.snapshots.restore_left(streams, symbols, f"{len(symbols)} delisted")

    async def _on_listed_streams(self, streams: list[str]) -> None:
        """Listings changed the concrete streams of the settings' patterns: stream this replica's part."""
        assert self.source is not None and self.pipeline is not None
        self._set_all_streams(streams)
        await self.source.set_streams(self._my_streams())
        self.pipeline.track_streams(self._my_streams())
