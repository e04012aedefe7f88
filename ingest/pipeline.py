"""Frames in, Kafka records out: parse, dedupe, encode, produce, and dead-letter what cannot be.

One ``Pipeline`` per worker. It works a whole frame at a time (one JSON parse per frame, one encode call
per frame's records) and keeps the only per-symbol state the connector needs: the event time of the last
record produced per (kind, symbol), which makes reconnect snapshots and rotation overlaps idempotent.
"""

from __future__ import annotations

import logging
import time

from ingest import metrics
from ingest.avro import Encoder
from ingest.binance import streams as stream_names
from ingest.binance.connection import FrameMeta
from ingest.binance.events import Reject, TickerRecord, dead_letter_headers, parse_frame, snapshot_records
from ingest.config import Settings
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
        self.last_event: dict[str, dict[str, int]] = {"miniticker": {}, "ticker": {}}
        self._accepted = {(kind, source): metrics.RECORDS_ACCEPTED.labels(self.topics[kind], source)
                          for kind in ("miniticker", "ticker") for source in ("websocket", "rest_snapshot")}
        self._last_event_gauges: dict[str, object] = {}

    async def on_frame(self, payload: bytes | str, meta: FrameMeta) -> None:
        """Handle one WebSocket frame (called by the connection manager for every data frame)."""
        result = parse_frame(payload, default_stream=self.default_stream, connection_id=meta.connection_id,
                             ingest_time_us=int(meta.received_at * 1_000_000),
                             max_frame_bytes=self.settings.max_frame_bytes)
        for reject in result.rejects:
            await self.dead_letter(reject, meta.received_at, meta.connection_id)
        if result.records:
            if not result.stream:
                _name_raw_streams(result.records)
            await self.produce_records(result.records, "websocket", result.stream)
        self.sink.poll()

    async def on_snapshot(self, entries: list[dict], kinds: set[str]) -> int:
        """Produce a REST ticker/24hr snapshot; dedupe drops entries older than what streams delivered."""
        now = time.time()
        records, rejects = snapshot_records(entries, kinds=kinds, ingest_time_us=int(now * 1_000_000))
        for reject in rejects:
            await self.dead_letter(reject, now, None)
        produced = await self.produce_records(records, "rest_snapshot", "rest:ticker/24hr")
        self.sink.poll()
        return produced

    async def produce_records(self, records: list[TickerRecord], source: str, stream: str) -> int:
        """Dedupe by event time per symbol, encode and produce; return how many were handed to Kafka."""
        produced = 0
        for kind, batch in self.dedupe(records).items():
            topic = self.topics[kind]
            encoder = self.encoders[kind]
            self._accepted[(kind, source)].inc(len(batch))
            newest = 0
            for rec in batch:
                try:
                    value = encoder.encode(rec.value)
                except (ValueError, TypeError, OverflowError) as exc:
                    # Accepted but not encodable: counted as dropped, and the record itself is kept.
                    metrics.RECORDS_DROPPED.labels("encode_error").inc()
                    await self.dead_letter(Reject("encode_error", rec.value.get("stream", stream),
                                                  repr(rec.value).encode(), rec.symbol, str(exc)[:200]),
                                           time.time(), rec.value.get("connection_id"))
                    continue
                if await self.sink.produce(topic, rec.symbol.encode(), value, rec.event_time_ms):
                    produced += 1
                newest = max(newest, rec.event_time_ms)
            if newest and source == "websocket":
                label = stream_names.metric_label(stream) if stream else "raw"
                gauge = self._last_event_gauges.get(label)
                if gauge is None:
                    gauge = self._last_event_gauges[label] = metrics.LAST_EVENT.labels(label)
                gauge.set(newest / 1000.0)  # type: ignore[attr-defined]
        return produced

    def dedupe(self, records: list[TickerRecord]) -> dict[str, list[TickerRecord]]:
        """Records newer than the last one produced per (kind, symbol), grouped by kind; remembers them."""
        fresh: dict[str, list[TickerRecord]] = {}
        for rec in records:
            last = self.last_event[rec.kind]
            if rec.event_time_ms <= last.get(rec.symbol, -1):
                metrics.DUPLICATES_SUPPRESSED.inc()
                continue
            last[rec.symbol] = rec.event_time_ms
            fresh.setdefault(rec.kind, []).append(rec)
        return fresh

    async def dead_letter(self, reject: Reject, received_at: float, connection_id: str | None) -> None:
        """Raw bytes to the dead-letter topic, keyed by stream, reason and context in headers."""
        metrics.DEADLETTER.labels(reject.reason).inc()
        headers = dead_letter_headers(reject, int(received_at * 1_000_000), connection_id=connection_id)
        await self.sink.produce(self.topics["deadletter"], (reject.stream or "unknown").encode(), reject.raw,
                                int(received_at * 1000), headers=headers)


def _name_raw_streams(records: list[TickerRecord]) -> None:
    """Raw connections with several streams: name each record's stream from its kind and symbol."""
    for rec in records:
        suffix = "miniTicker" if rec.kind == "miniticker" else "ticker"
        rec.value["stream"] = f"{rec.symbol.lower()}@{suffix}"
