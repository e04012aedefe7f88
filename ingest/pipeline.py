"""Frames in, Kafka records out: decode, dedupe, encode, produce, and dead-letter what cannot be.

One ``Pipeline`` per worker, one path for every source (docs/architecture.md): ``events.parse_frame`` (a
WebSocket frame) or ``events.snapshot_records`` (a REST snapshot) give ``Batch``es of validated typed records;
``produce_batch`` drops what the per-symbol ``LastSeen`` state already produced (on records, before any
encoding), encodes the rest with the topic's ``Encoder`` (the frame's shared fields once) and hands them to
``KafkaSink.produce_many``; ``dead_letter`` sends rejects through the same ``produce_many``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ingest import metrics
from ingest.avro import Encoder
from ingest.binance import events
from ingest.binance import streams as stream_names
from ingest.binance.connection import FrameMeta
from ingest.binance.events import Batch, Reject, dead_letter_headers, parse_frame, snapshot_records
from ingest.config import Settings
from ingest.dedupe import LastSeen
from ingest.kafka.producer import KafkaSink

log = logging.getLogger(__name__)


class Pipeline:
    """Everything between a received frame and ``producer.produce``."""

    def __init__(self, settings: Settings, sink: KafkaSink, encoders: dict[str, Encoder],
                 streams: list[str]) -> None:
        self.settings = settings
        self.sink = sink
        self.encoders = encoders
        self.topics = {kind: settings.topic(kind) for kind in ("miniticker", "ticker", "symbols", "deadletter")}
        # Raw (/ws/) frames do not name their stream; with exactly one stream per worker we know it.
        self.default_stream = streams[0] if len(streams) == 1 else ""
        # ... and with several, a kind's all-market stream (when subscribed) is the one that carried it.
        self.raw_names = {stream_names.kind(name): name for name in streams if name in stream_names.ALL_MARKET}
        self.seen = LastSeen(("miniticker", "ticker"))
        self._accepted = {(kind, source): metrics.RECORDS_ACCEPTED.labels(self.topics[kind], source)
                          for kind in ("miniticker", "ticker") for source in ("websocket", "rest_snapshot")}
        self._last_event_gauges: dict[str, object] = {}
        self._snapshot_records = {kind: metrics.SNAPSHOT_RECORDS.labels(self.topics[kind])
                                  for kind in ("miniticker", "ticker")}
    async def on_frame(self, payload: bytes | str, meta: FrameMeta) -> None:
        """Handle one WebSocket frame (called by the connection manager for every data frame)."""
        result = parse_frame(payload, default_stream=self.default_stream, connection_id=meta.connection_id,
                             ingest_time_us=int(meta.received_at * 1_000_000),
                             max_frame_bytes=self.settings.max_frame_bytes)
        for reject in result.rejects:
            await self.dead_letter(reject, meta.received_at, meta.connection_id)
        for batch in result.batches:
            await self.produce_batch(batch)
        self.sink.poll()

    def state_size(self) -> int:
        """Entries of the per-symbol state (exported as ``symbol_state_entries``)."""
        return self.seen.size()

    def track_streams(self, streams: list[str]) -> None:
        """Give every subscribed stream its series from the moment it is subscribed: the last-event gauge starts
        at the subscription time and the frame counter at 0. A stream that never delivers then ages on the
        dashboard and fires the no-data alert, instead of having no series at all (Binance accepts a SUBSCRIBE
        to a retired stream and sends nothing). Series of streams no longer subscribed are removed, so a
        released shard or a delisted pattern does not alert. Labels are bounded (``metric_label``)."""
        labels = {stream_names.metric_label(name) for name in streams}
        now = time.time()
        for label in sorted(labels - self._last_event_gauges.keys()):
            self._last_event_gauges[label] = metrics.LAST_EVENT.labels(label)
            self._last_event_gauges[label].set(now)  # type: ignore[attr-defined]
            metrics.WS_MESSAGES.labels(label)
        for label in sorted(self._last_event_gauges.keys() - labels - {"raw"}):
            del self._last_event_gauges[label]
            metrics.LAST_EVENT.remove(label)

    def _set_last_event(self, stream: str, newest_ms: int) -> None:
        label = stream_names.metric_label(stream) if stream else "raw"
        gauge = self._last_event_gauges.get(label)
        if gauge is None:
            gauge = self._last_event_gauges[label] = metrics.LAST_EVENT.labels(label)
        gauge.set(newest_ms / 1000.0)  # type: ignore[attr-defined]

    async def on_snapshot(self, entries: list[dict[str, Any]], kinds: set[str]) -> int:
        """Produce a REST ticker/24hr snapshot; dedupe drops entries older than what streams delivered."""
        now = time.time()
        batches, rejects = snapshot_records(entries, kinds=kinds, ingest_time_us=int(now * 1_000_000))
        for reject in rejects:
            await self.dead_letter(reject, now, None)
        produced = 0
        for batch in batches:
            self._snapshot_records[batch.kind].inc(len(batch.items))
            produced += await self.produce_batch(batch)
        self.sink.poll()
        return produced

    async def produce_batch(self, batch: Batch) -> int:
        """Dedupe by event time per symbol, encode and produce; return how many were handed to Kafka."""
        if not batch.stream and batch.source == "websocket":  # a raw multi-stream frame: name each record's stream
            produced = 0
            for named in _name_raw_streams(batch, self.raw_names):
                produced += await self.produce_batch(named)
            return produced
        fresh = self.seen.fresh(batch.kind, batch.items)
        if not fresh:
            return 0
        self._accepted[(batch.kind, batch.source)].inc(len(fresh))
        values = self.encoders[batch.kind].encode_tickers(fresh, batch.frame_fields())
        produced = await self.sink.produce_many(
            self.topics[batch.kind],
            [(item.symbol.encode(), value, item.event_time) for item, value in zip(fresh, values, strict=True)])
        if batch.source == "websocket":
            self._set_last_event(batch.stream, max(item.event_time for item in fresh))
        return produced

    async def dead_letter(self, reject: Reject, received_at: float, connection_id: str | None) -> None:
        """Raw bytes to the dead-letter topic, keyed by stream, reason and context in headers."""
        metrics.DEADLETTER.labels(reject.reason).inc()
        headers = dead_letter_headers(reject, int(received_at * 1_000_000), connection_id=connection_id)
        await self.sink.produce_many(self.topics["deadletter"], [((reject.stream or "unknown").encode(),
                                     events.dead_letter_value(reject), int(received_at * 1000))], headers)


def _name_raw_streams(batch: Batch, all_market: dict[str, str]) -> list[Batch]:
    """Raw connections with several streams: a record's stream is its kind's all-market stream when that is
    subscribed, else the per-symbol stream of its kind and symbol. One batch per stream name, order kept."""
    suffix = "miniTicker" if batch.kind == events.MINITICKER else "ticker"
    by_stream: dict[str, list[Any]] = {}
    for item in batch.items:
        by_stream.setdefault(all_market.get(batch.kind) or f"{item.symbol.lower()}@{suffix}", []).append(item)
    return [batch._replace(stream=name, items=items) for name, items in by_stream.items()]
