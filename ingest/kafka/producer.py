"""The Kafka producer: settings we own, keyed produce, delivery accounting and backpressure.

Every record handed to :meth:`KafkaSink.produce` ends in exactly one counter: ``records_produced_total``
when Kafka acknowledges it, or ``records_dropped_total{reason}`` when it never will (buffer policy,
delivery timeout, fatal error). Nothing is awaited per record: librdkafka batches, and delivery reports
arrive through :meth:`poll`, which the pipeline calls once per frame and a background task calls often.

The Kafka message timestamp is the exchange event time, so stream processors get event-time semantics
for free, and the delivery callback computes event lag without any per-message Python state.

Delivery reports are a large per-record cost of the pipeline (py-spy, docs/performance.md): a Prometheus
``Histogram.observe`` takes a lock per call, and every Python operation in a callback is paid per record.
So each topic has one callback, bound once, that only appends the record's timestamp (the event time) and
its produce latency; each ``poll``/``flush`` turns them into counts and lags and adds them to the metrics in
one step per topic (``_Observations``): the metrics hold the same counts and buckets after every ``poll``
as with per-record updates, the lag being measured when the poll that served the report returns.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from ingest import metrics
from ingest.config import Settings, owned_kafka_properties
from ingest.fatal import FatalError
from ingest.logs import librdkafka_logger

log = logging.getLogger(__name__)

# Defaults users may override with INGEST_KAFKA_* or a properties file.
DEFAULTS: dict[str, Any] = {
    "compression.type": "lz4",  # cheapest CPU per byte saved for short JSON-like Avro records
    "linger.ms": 1,  # a frame is produced in one burst, so batches stay large; 5 -> 1 ms: ~3.5 ms less p50 lag
    "batch.size": 1_000_000,
    "message.timeout.ms": 600_000,  # ride out a 10-minute broker outage before counting a drop
    "queue.buffering.max.kbytes": 1_048_576,
    "statistics.interval.ms": 15_000,
    "client.id": "binance-ingest",
}


_Headers = list[tuple[str, str | bytes | None]]
"""Kafka record headers as confluent_kafka's ``produce`` declares them."""


def producer_config(settings: Settings) -> dict[str, Any]:
    """The librdkafka configuration: our defaults < user properties, plus the properties the worker owns
    (config.owned_kafka_properties; config.load refused any user value for them, so nothing is overwritten)."""
    conf: dict[str, Any] = dict(DEFAULTS)
    conf.update(settings.kafka_properties)
    conf.update(owned_kafka_properties(settings))
    return conf


class FatalProducerError(FatalError):
    """librdkafka reported a fatal error (error_cb with ``err.fatal()``): the producer can produce nothing
    more. Raised from ``poll()``, it ends the worker (``ingest.fatal``)."""

    def __init__(self, err: KafkaError) -> None:
        super().__init__(f"fatal Kafka producer error {err.name()}: {err.str()}")
        self.kafka_error = err


def fatal_or_same(exc: KafkaException) -> Exception:
    """``FatalProducerError`` for a KafkaException that carries a fatal error, else the exception itself.

    The binding raises the fatal error once, from one ``poll()``; after it every ``produce()`` raises
    ``_FATAL`` (with ``fatal()`` False), so that code is fatal too: a caught first raise must not leave a
    producer that refuses everything behind a running worker."""
    err = exc.args[0] if exc.args else None
    if isinstance(err, KafkaError) and (err.fatal() or err.code() == KafkaError._FATAL):
        return FatalProducerError(err)
    return exc


def kafka_reason(err: KafkaError | None) -> str:
    """The drop reason named after librdkafka's error, e.g. ``kafka_msg_size_too_large``."""
    name = (err.name() or str(err.code())) if err is not None else "error"
    return "kafka_" + name.lower().lstrip("_")


class KafkaSink:
    """A keyed, idempotent producer with explicit buffer-full policy and per-record accounting."""

    def __init__(self, settings: Settings, producer_factory: Callable[[dict[str, Any]], Producer] = Producer) -> None:
        self.policy = settings.buffer_policy
        self._conf = producer_config(settings)
        self._conf["error_cb"] = self._on_error
        self._conf["stats_cb"] = self._on_stats
        self._conf["logger"] = librdkafka_logger()
        self._producer = producer_factory(self._conf)
        self.in_flight = 0
        self.acked = 0
        self.failed = 0
        self.last_error: str | None = None
        self.broker_up = True
        self._purge_reason: str | None = None  # set while abandon() purges: the drop reason of purged records
        self.fatal_error: str | None = None  # set once librdkafka reported a fatal error (``_note_fatal``)
        self._acked_by_topic: dict[str, _Observations] = {}  # per topic: counts and lags added to metrics
        self._stamps_by_topic: dict[str, list[int]] = {}  # timestamps of acked records, emptied by poll/flush
        self._callbacks: dict[str, Callable[[KafkaError | None, Message], None]] = {}
        self._latencies: list[float | None] = []  # produce latencies of acked records, emptied by poll/flush
        self._produce_latency = _Observations(None, metrics.PRODUCE_LATENCY)

    # ----- producing: one path, ``produce_many`` -----
    async def produce_many(self, topic: str, records: list[tuple[bytes, bytes, int]],
                           headers: list[tuple[str, bytes]] | None = None) -> int:
        """Hand (key, value, timestamp) records to librdkafka (``headers`` on each, e.g. a dead letter's): one
        tight loop while the buffer has room, then record by record with the buffer policy; returns how many
        were accepted."""
        # One copy per call, in the type librdkafka's binding declares (its list is invariant in the value type).
        kafka_headers: _Headers | None = list(headers) if headers else None
        produce = self._producer.produce
        on_delivery = self._callbacks.get(topic) or self._callback(topic)
        done = 0
        try:
            if kafka_headers:
                for key, value, timestamp_ms in records:
                    produce(topic, value, key, timestamp=timestamp_ms, headers=kafka_headers, on_delivery=on_delivery)
                    done += 1
            else:
                for key, value, timestamp_ms in records:
                    produce(topic, value, key, timestamp=timestamp_ms, on_delivery=on_delivery)
                    done += 1
        except BufferError:
            pass  # the rest waits for room, or is dropped, as the buffer policy says
        except KafkaException as exc:  # after a fatal error librdkafka refuses every record
            self.in_flight += done
            error = self._note_fatal(fatal_or_same(exc))
            err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            reason = "kafka_fatal" if self.fatal_error is not None else kafka_reason(err)
            metrics.RECORDS_DROPPED.labels(reason).inc(len(records) - done)  # refused: never in librdkafka
            raise error from None
        self.in_flight += done
        accepted = done
        for key, value, timestamp_ms in records[done:]:
            accepted += await self._produce_when_full(topic, key, value, timestamp_ms, kafka_headers, on_delivery)
        return accepted

    async def produce(self, topic: str, key: bytes, value: bytes, timestamp_ms: int,
                      headers: list[tuple[str, bytes]] | None = None) -> bool:
        """One record through ``produce_many``; True if accepted, False if dropped by the buffer policy."""
        return await self.produce_many(topic, [(key, value, timestamp_ms)], headers) == 1

    async def _produce_when_full(self, topic: str, key: bytes, value: bytes, timestamp_ms: int,
                                 headers: _Headers | None,
                                 on_delivery: Callable[[KafkaError | None, Message], None]) -> bool:
        """The buffer was full: apply the policy to one record; True if it was accepted in the end."""
        while True:
            if self.policy == "drop_newest":
                metrics.RECORDS_DROPPED.labels("buffer_full").inc()
                return False
            if self.policy == "drop_oldest":
                # librdkafka cannot remove single queued messages; purging the not-yet-sent queue
                # drops the oldest records, and each one is counted by its delivery report.
                self._producer.purge(in_queue=True, in_flight=False, blocking=False)
                self.poll()  # not the bare producer's: acks noted by the callbacks are counted right away
            else:  # block: the source waits; the event loop stays free for pings and the metrics server.
                self.poll()
                await asyncio.sleep(0.05)
            try:
                self._producer.produce(topic, value, key, timestamp=timestamp_ms, headers=headers,
                                       on_delivery=on_delivery)
            except BufferError:
                continue
            self.in_flight += 1
            return True

    def poll(self) -> int:
        """Serve delivery reports and statistics callbacks without blocking."""
        try:
            served = self._producer.poll(0)
        except KafkaException as exc:  # the binding raises librdkafka's fatal error from poll() itself
            raise self._note_fatal(fatal_or_same(exc)) from None
        self._record_observations()
        return served

    def flush(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for outstanding records; return how many are still unacknowledged."""
        try:
            remaining = self._producer.flush(timeout_s)
        except KafkaException as exc:
            raise self._note_fatal(fatal_or_same(exc)) from None
        self._record_observations()
        return remaining

    def abandon(self, reason: str) -> int:
        """At the end of the grace period: purge what is left, so each leftover record is counted as dropped
        under ``reason`` (the purge's delivery reports would otherwise say buffer_full); returns how many."""
        leftover = self.in_flight
        self._purge_reason = reason
        try:
            # A producer in a fatal state may raise its error from each call; whatever it did not report is
            # counted below, so the calls only decide which reports come first.
            with contextlib.suppress(KafkaException):
                self._producer.purge(in_queue=True, in_flight=True, blocking=False)
            with contextlib.suppress(KafkaException):
                self._producer.poll(0)
            with contextlib.suppress(KafkaException):
                self._producer.flush(0)
        finally:
            self._purge_reason = None
        self._record_observations()
        if self.in_flight:  # no delivery report came for these: count them here
            metrics.RECORDS_DROPPED.labels(reason).inc(self.in_flight)
            self.in_flight = 0
        return leftover

    def _record_observations(self) -> None:
        """Add what the delivery reports noted since the last call to the Prometheus metrics."""
        # Only the first n entries are taken and deleted (in place: the callbacks hold these lists), so a report
        # appended meanwhile by a callback on another thread (``flush`` runs in one at shutdown) is kept.
        now = time.time()
        for topic, stamps in self._stamps_by_topic.items():
            acked = len(stamps)
            if not acked:
                continue
            taken = stamps[:acked]
            del stamps[:acked]
            observations = self._acked_by_topic[topic]
            observations.count += acked
            observations.values += [lag if lag > 0.0 else 0.0 for lag in [now - ts / 1000.0 for ts in taken if ts > 0]]
            self.acked += acked
            self.in_flight -= acked
            self.broker_up = True
            observations.record()
        latencies = self._latencies
        if latencies:
            taken_latencies = latencies[:len(latencies)]
            del latencies[:len(taken_latencies)]
            self._produce_latency.values += [latency for latency in taken_latencies if latency is not None]
        self._produce_latency.record()
        metrics.PRODUCER_QUEUE.set(self.in_flight)

    def list_topics(self, timeout_s: float = 5.0) -> Any:
        return self._producer.list_topics(timeout=timeout_s)

    def _note_fatal(self, exc: Exception) -> Exception:
        """Remember a fatal error however it surfaced (error_cb, or a raise from produce/poll/flush), so the
        records librdkafka fails after it are counted under one reason, ``kafka_fatal``."""
        if isinstance(exc, FatalProducerError) and self.fatal_error is None:
            self.fatal_error = str(exc)
        return exc

    # ----- callbacks (run inside poll/flush on this thread) -----
    def _callback(self, topic: str) -> Callable[[KafkaError | None, Message], None]:
        """The delivery callback of ``topic``, made once: an ack costs two appends, a failure is counted."""
        self._acked_by_topic[topic] = _Observations(metrics.RECORDS_PRODUCED.labels(topic),
                                                    metrics.EVENT_LAG.labels(topic))
        stamps = self._stamps_by_topic[topic] = []
        note_stamp, note_latency, failed = stamps.append, self._latencies.append, self._on_failure

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                note_stamp(msg.timestamp()[1])
                note_latency(msg.latency())
            else:
                failed(err, msg)
        self._callbacks[topic] = on_delivery
        return on_delivery

    def _on_failure(self, err: KafkaError, msg: Message) -> None:
        self.in_flight -= 1
        topic = msg.topic()
        self.failed += 1
        code = err.code()
        if self._purge_reason is not None and code in (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT):
            reason = self._purge_reason
        elif self.fatal_error is not None and code in (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT,
                                                       KafkaError._FATAL):
            reason = "kafka_fatal"  # what librdkafka still held when the fatal error came; a refusal keeps its name
        elif code == KafkaError._PURGE_QUEUE:
            reason = "buffer_full"
        elif code == KafkaError._MSG_TIMED_OUT:
            reason = "delivery_timeout"
        else:
            reason = kafka_reason(err)
        metrics.RECORDS_DROPPED.labels(reason).inc()
        metrics.PRODUCER_ERRORS.labels(err.name() or str(code)).inc()
        self.last_error = f"{err.name()}: {err.str()}"
        log.warning("record not delivered", extra={"topic": topic, "reason": reason, "error": self.last_error})

    def _on_error(self, err: KafkaError) -> None:
        """Client-level errors: all brokers down is the one that matters for readiness."""
        metrics.PRODUCER_ERRORS.labels(err.name() or str(err.code())).inc()
        self.last_error = f"{err.name()}: {err.str()}"
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self.broker_up = False
        if err.fatal():
            raise self._note_fatal(FatalProducerError(err))
        log.warning("producer error", extra={"reason": self.last_error})

    def _on_stats(self, stats_json: str) -> None:
        metrics.observe_librdkafka_stats(stats_json)


class _Observations:
    """A counter increment and histogram observations noted per record, added to Prometheus once per poll.

    ``record`` puts n observations into the histogram's buckets with one increment per bucket, the same
    result as n ``observe`` calls (a value goes to the first bucket whose bound is >= it).
    """

    def __init__(self, counter: Any, histogram: Any) -> None:
        self.counter = counter
        self.histogram = histogram
        self.count = 0
        self.values: list[float] = []

    def record(self) -> None:
        if self.count:
            self.counter.inc(self.count)
            self.count = 0
        values = self.values
        if not values:
            return
        self.values = []
        hist = self.histogram
        buckets = getattr(hist, "_buckets", None)
        bounds = getattr(hist, "_upper_bounds", None)
        if buckets is None or bounds is None:  # a prometheus_client without these internals: the slow way
            for value in values:
                hist.observe(value)
            return
        per_bucket = [0] * len(bounds)
        for value in values:
            per_bucket[bisect.bisect_left(bounds, value)] += 1
        for index, n in enumerate(per_bucket):
            if n:
                buckets[index].inc(n)
        hist._sum.inc(sum(values))
