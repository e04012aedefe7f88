"""Frames in, Kafka records out: parse, dedupe, encode, produce, and dead-letter what cannot be.

One ``Pipeline`` per worker. It works a whole frame at a time (one JSON parse per frame, one encode call
per frame's records) and keeps the only per-symbol state the connector needs: the event time of the last
record produced per (kind, symbol), which makes reconnect snapshots and rotation overlaps idempotent.

Two paths, same records (docs/performance.md): a well-formed array frame of one ticker kind is decoded by
msgspec into typed structs and each struct is encoded by a generated ``StructWriter`` (checks and bytes in
one pass, the frame's shared fields encoded once); any frame that path refuses (a bad ticker, a control
reply, a raw multi-stream frame) goes through ``parse_frame``, which names every reject.
"""

from __future__ import annotations

import logging
import time

from ingest import metrics
from ingest.avro import Encoder, StructWriter
from ingest.binance import events
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
        # ... and with several, a kind's all-market stream (when subscribed) is the one that carried it.
        self.raw_names = {stream_names.kind(name): name for name in streams if name in stream_names.ALL_MARKET}
        self.last_event: dict[str, dict[str, int]] = {"miniticker": {}, "ticker": {}}
        self._accepted = {(kind, source): metrics.RECORDS_ACCEPTED.labels(self.topics[kind], source)
                          for kind in ("miniticker", "ticker") for source in ("websocket", "rest_snapshot")}
        self._last_event_gauges: dict[str, object] = {}
        self._snapshot_records = {kind: metrics.SNAPSHOT_RECORDS.labels(self.topics[kind])
                                  for kind in ("miniticker", "ticker")}
        self.writers = {kind: StructWriter(encoders[kind].schema, encoders[kind].prefix,
                                           events.FAST_TYPES[kind].__struct_fields__,
                                           {"event_type": events.KIND_EVENT[kind]},
                                           events.FAST_DECIMALS[kind], events.DECIMALS_OK[kind])
                        for kind in events.FAST_TYPES if kind in encoders}

    async def on_frame(self, payload: bytes | str, meta: FrameMeta) -> None:
        """Handle one WebSocket frame (called by the connection manager for every data frame)."""
        if len(payload) <= self.settings.max_frame_bytes and await self._fast_frame(payload, meta):
            self.sink.poll()
            return
        result = parse_frame(payload, default_stream=self.default_stream, connection_id=meta.connection_id,
                             ingest_time_us=int(meta.received_at * 1_000_000),
                             max_frame_bytes=self.settings.max_frame_bytes)
        for reject in result.rejects:
            await self.dead_letter(reject, meta.received_at, meta.connection_id)
        if result.records:
            if not result.stream:
                _name_raw_streams(result.records, self.raw_names)
            await self.produce_records(result.records, "websocket", result.stream)
        self.sink.poll()

    async def _fast_frame(self, payload: bytes | str, meta: FrameMeta) -> bool:
        """The fast path; False (nothing done, no state changed) when the frame needs ``parse_frame``."""
        decoded = events.decode_fast(payload)
        if decoded is None:
            return False
        kind, stream, items = decoded
        stream = stream if stream is not None else self.default_stream
        writer = self.writers.get(kind)
        if not stream or writer is None:  # raw multi-stream frames name each record's stream: parse_frame does
            return False
        tail = writer.tail({"ingest_time": int(meta.received_at * 1_000_000), "source": "websocket",
                            "stream": stream, "connection_id": meta.connection_id})
        write = writer.write
        try:  # every record is checked and encoded before any is produced: a failure leaves no trace
            values = [write(item, tail) for item in items]
        except (ValueError, TypeError, IndexError, OverflowError):
            return False
        fresh = self.dedupe_encoded(kind, items, values)
        if fresh:
            self._accepted[(kind, "websocket")].inc(len(fresh))
            await self.sink.produce_many(self.topics[kind], fresh)
            self._set_last_event(stream, max(event_time for _, _, event_time in fresh))
        return True

    def state_size(self) -> int:
        """Entries of the per-symbol state (exported as ``symbol_state_entries``)."""
        return sum(len(times) for times in self.last_event.values())

    def dedupe_encoded(self, kind: str, items: list, values: list[bytes]) -> list[tuple[bytes, bytes, int]]:
        """``dedupe`` for the fast path: (key, value, timestamp) of the structs newer than the last produced."""
        last = self.last_event[kind]
        seen = last.get
        fresh = []
        for item, value in zip(items, values, strict=True):
            event_time, symbol = item.event_time, item.symbol
            if event_time <= seen(symbol, -1):
                continue
            last[symbol] = event_time
            fresh.append((symbol.encode(), value, event_time))
        if len(fresh) < len(items):
            metrics.DUPLICATES_SUPPRESSED.inc(len(items) - len(fresh))
        return fresh

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

    async def on_snapshot(self, entries: list[dict], kinds: set[str]) -> int:
        """Produce a REST ticker/24hr snapshot; dedupe drops entries older than what streams delivered."""
        now = time.time()
        records, rejects = snapshot_records(entries, kinds=kinds, ingest_time_us=int(now * 1_000_000))
        for rec in records:
            self._snapshot_records[rec.kind].inc()
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
            newest: dict[str, int] = {}  # stream -> newest event time (raw frames name each record's stream)
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
                name = stream or rec.value.get("stream", "")
                newest[name] = max(newest.get(name, 0), rec.event_time_ms)
            if source == "websocket":
                for name, newest_ms in newest.items():
                    self._set_last_event(name, newest_ms)
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
        await self.sink.produce(self.topics["deadletter"], (reject.stream or "unknown").encode(),
                                events.dead_letter_value(reject), int(received_at * 1000), headers=headers)


def _name_raw_streams(records: list[TickerRecord], all_market: dict[str, str]) -> None:
    """Raw connections with several streams: name each record's stream, the kind's all-market stream when it
    is subscribed, else the per-symbol stream of its kind and symbol."""
    for rec in records:
        suffix = "miniTicker" if rec.kind == "miniticker" else "ticker"
        rec.value["stream"] = all_market.get(rec.kind) or f"{rec.symbol.lower()}@{suffix}"
