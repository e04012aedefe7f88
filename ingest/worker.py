"""``ingest run``: the connector process, wiring sources -> pipeline -> Kafka, with seeding and shutdown.

Start-up order matters for operators: settings are checked first (bad config exits 2 with one line),
the metrics server comes up next (so /healthz answers during slow starts), then the registry and topics
(retried with backoff when unreachable: a registry outage at start is a wait, not a crash loop), then
exchangeInfo, then the streams. SIGTERM stops reading, flushes within the grace period and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from typing import Any

from ingest import avro, metrics
from ingest import config as config_mod
from ingest.binance import streams as stream_names
from ingest.binance.connection import StreamSource
from ingest.binance.rest import RestClient
from ingest.config import Settings
from ingest.kafka.producer import KafkaSink
from ingest.kafka.topics import KnownSymbols, admin_client, ensure_topics, kafka_unreachable, publish_symbols
from ingest.logs import setup_logging
from ingest.pipeline import Pipeline

log = logging.getLogger("ingest.worker")

# Delivery reports are served by polling: often while records are in flight (each poll that comes late adds
# to the measured event lag), rarely when nothing is (an idle worker should cost nothing).
POLL_BUSY_S = 0.005
POLL_IDLE_S = 0.05


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config_mod.add_arguments(parser)


def main(args: argparse.Namespace) -> int:
    settings = config_mod.load(args)
    config_mod.require_kafka(settings)
    setup_logging(settings.log_format, settings.log_level)
    return asyncio.run(Worker(settings).run())


class Worker:
    """One connector process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.known = KnownSymbols()
        self.sink: KafkaSink | None = None
        self.source: StreamSource | None = None
        self.pipeline: Pipeline | None = None
        self.rest = RestClient(settings)
        self.stop_event = asyncio.Event()
        self.metrics_port = 0
        self.kinds: set[str] = set()

    # ----- readiness -----
    def readiness(self) -> tuple[bool, dict[str, Any]]:
        reasons = []
        if self.source is None or not self.source.connected:
            reasons.append("binance: not all connections are delivering")
        if self.sink is None:
            reasons.append("kafka: producer not started")
        elif not self.sink.broker_up:
            reasons.append(f"kafka: brokers unreachable ({self.sink.last_error})")
        ready = not reasons  # MetricsServer exports this as binance_ingest_ready on every scrape
        return ready, {"ready": ready, "reasons": reasons}

    # ----- lifecycle -----
    async def run(self) -> int:
        s = self.settings
        metrics.set_build_info()
        metrics.SHARDS_OWNED.set(1)
        server = metrics.MetricsServer(s.metrics_host, s.metrics_port, self.readiness)
        self.metrics_port = server.start()
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
        topics = {kind: s.topic(kind) for kind in ("miniticker", "ticker", "symbols")}
        client = avro.make_client(s.schema_registry_url, s.schema_registry_user_info)
        encoders = await avro.retry_with_backoff_async(
            lambda: avro.register_schemas(client, topics), what="schema registration",
            initial_s=s.backoff_initial_s, max_s=s.backoff_max_s)
        admin = admin_client(s)
        await avro.retry_with_backoff_async(lambda: ensure_topics(admin, s, timeout_s=10.0), what="topic seeding",
                                            initial_s=s.backoff_initial_s, max_s=s.backoff_max_s,
                                            retryable=kafka_unreachable)
        self.sink = KafkaSink(s)
        exchange_info = await self.rest.exchange_info()
        streams = stream_names.expand(s.streams, exchange_info, s.quote_assets)
        self.kinds = {stream_names.kind(name) for name in streams}
        self.pipeline = Pipeline(s, self.sink, encoders, streams)
        await self._apply_exchange_info(exchange_info)
        self.source = StreamSource(s, streams, self.pipeline.on_frame, on_connected=self._on_connected)

    async def _serve(self) -> None:
        assert self.source is not None
        tasks = [asyncio.create_task(self.source.run(), name="streams"),
                 asyncio.create_task(self._poll_loop(), name="producer-poll"),
                 asyncio.create_task(self._refresh_loop(), name="exchange-info-refresh")]
        stopper = asyncio.create_task(self.stop_event.wait(), name="stop")
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        for task in [*tasks, stopper]:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for task in done:
            if task is not stopper and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def _shutdown(self) -> None:
        if self.sink is None:
            return
        grace = self.settings.shutdown_grace_s
        log.info("flushing producer", extra={"in_flight": self.sink.in_flight, "grace_s": grace})
        remaining = await asyncio.to_thread(self.sink.flush, grace)
        if remaining:
            lost = self.sink.abandon("shutdown_timeout")
            log.error("records not acknowledged before the grace period ended", extra={"dropped": lost})
        log.info("worker stopped", extra={"acked": self.sink.acked, "failed": self.sink.failed})

    async def _poll_loop(self) -> None:
        """Serve delivery reports even when no frames arrive (Kafka outage recovery, idle streams)."""
        assert self.sink is not None
        while True:
            self.sink.poll()
            await asyncio.sleep(POLL_BUSY_S if self.sink.in_flight else POLL_IDLE_S)

    # ----- REST: exchangeInfo and snapshots -----
    async def _on_connected(self, connection_id: str) -> None:
        """After every (re)connect: restore state with a ticker/24hr snapshot."""
        if not self.settings.snapshot_on_connect or self.pipeline is None or self.source is None:
            return
        streams = self.source.streams
        all_market = any(name in stream_names.ALL_MARKET for name in streams)
        symbols = sorted({name.partition("@")[0].upper() for name in streams if name not in stream_names.ALL_MARKET})
        try:
            entries = await self.rest.ticker_24hr(None if all_market else symbols)
        except Exception as exc:  # a failed snapshot must not take the stream down
            log.warning("snapshot failed", extra={"connection_id": connection_id, "reason": repr(exc)[:200]})
            return
        produced = await self.pipeline.on_snapshot(entries, self.kinds)
        log.info("snapshot produced", extra={"connection_id": connection_id, "records": produced})

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.exchange_info_refresh_s)
            try:
                info = await self.rest.exchange_info()
            except Exception as exc:  # keep streaming with the symbols we know
                log.warning("exchangeInfo refresh failed", extra={"reason": repr(exc)[:200]})
                continue
            await self._apply_exchange_info(info)

    async def _apply_exchange_info(self, info: dict[str, Any]) -> None:
        """Publish changed symbols; follow listings/delistings for per-symbol stream patterns."""
        assert self.pipeline is not None
        changes = self.known.update(info)
        if changes.changed:
            await publish_symbols(self.pipeline.sink, self.pipeline.encoders["symbols"], self.settings, self.known,
                                  changes.changed)
        for name in changes.listed:
            log.info("symbol listed", extra={"symbol": name})
        for name in changes.delisted:
            log.info("symbol delisted", extra={"symbol": name})
        if self.source is not None and (changes.listed or changes.delisted) and any(
                stream_names.is_pattern(p) for p in self.settings.streams):
            wanted = stream_names.expand(self.settings.streams, info, self.settings.quote_assets)
            await self.source.set_streams(wanted)
