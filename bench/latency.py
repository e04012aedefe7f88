"""Latency at nominal load: 3,000 tickers/s in 1 s arrays, event time -> Kafka, two ways.

1. The worker's own histogram ``binance_ingest_event_lag_seconds`` (event time -> producer acknowledgement),
   scraped before and after the window; quantiles interpolated inside buckets as PromQL's
   ``histogram_quantile`` does, so they are only as fine as the buckets (5, 10, 25, 50 ms...).
2. Independently, a consumer: it decodes ``event_time`` from each record's Avro value and compares it with
   the time the consumer received the record. We chose this over LogAppendTime topics because the worker
   creates its topics itself (CreateTime = event time is its contract); the consumer figure is therefore
   event -> ack -> fetched by a consumer, an upper bound of event -> ack (it adds the fetch wait).
Same clock: the simulator stamps E with time.time() on this machine, so no clock skew is involved.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import fastavro
from confluent_kafka import Consumer

from bench.procs import Sim, Worker, cpu_seconds, peak_rss_mb
from ingest.avro import parsed_schema

LAG_METRIC = "binance_ingest_event_lag_seconds_bucket"


@dataclass
class Latency:
    records_per_s: float
    worker_p50_ms: float
    worker_p99_ms: float
    worker_max_le_ms: float  # upper bound of the highest non-empty bucket
    consumer_p50_ms: float
    consumer_p99_ms: float
    consumer_max_ms: float
    consumer_lags_ms: list[float]
    arrival_p50_ms: float  # event time -> frame read by the worker: the simulator's and the socket's share
    arrival_p99_ms: float
    cpu_percent: float
    peak_rss_mb: float
    read_p50_ms: float = math.nan  # frame read by the worker -> fetched: the worker's, broker's and consumer's share
    read_p99_ms: float = math.nan


def lag_buckets(metrics_text: str, topic: str) -> dict[float, float]:
    """Cumulative bucket counts (le -> count) of the event-lag histogram for ``topic``."""
    out: dict[float, float] = {}
    for line in metrics_text.splitlines():
        if line.startswith(LAG_METRIC) and f'topic="{topic}"' in line:
            series, _, value = line.rpartition(" ")
            le = series.split('le="')[1].split('"')[0]
            out[math.inf if le == "+Inf" else float(le)] = float(value)
    return out


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """PromQL's interpolation over cumulative buckets; NaN when empty."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0
    if not total:
        return math.nan
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / max(count - prev_count, 1e-12)
        prev_bound, prev_count = bound, count
    return bounds[-1]


def quantile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class LagConsumer(threading.Thread):
    """Reads the topic from its end and notes receive time - event_time for every record."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-lag-{uuid.uuid4().hex[:6]}",
                                  "auto.offset.reset": "latest", "fetch.wait.max.ms": 5, "enable.auto.commit": False})
        self.consumer.subscribe([topic])
        self.schema = parsed_schema("ticker")
        self.lags_ms: list[float] = []
        self.arrival_ms: list[float] = []  # event time -> the worker read the frame (simulator + WebSocket)
        self.read_ms: list[float] = []  # the worker read the frame -> fetched here (worker + broker + fetch)
        self.recording = False
        self.stopped = threading.Event()

    def run(self) -> None:
        received: list[tuple[float, bytes]] = []
        try:
            while not self.stopped.is_set():
                msg = self.consumer.poll(0.1)  # not consume(n): that waits for n records or the timeout
                if msg is not None:
                    now = time.time()
                    if msg.error() is None and self.recording:
                        # Decode later: ~20 µs of fastavro per record here would delay the next records'
                        # receive times and add the consumer's own speed to the lag of a 3,000-record array.
                        received.append((now, msg.value()))
        finally:
            self.consumer.close()
        for now, value in received:
            record = fastavro.schemaless_reader(BytesIO(value[5:]), self.schema, None)
            event_ms = record["event_time"]
            if not isinstance(event_ms, int):  # fastavro returns a datetime for timestamp-millis
                event_ms = event_ms.timestamp() * 1000
            self.lags_ms.append(now * 1000 - event_ms)
            ingest_us = record["ingest_time"]
            if not isinstance(ingest_us, int):
                ingest_us = ingest_us.timestamp() * 1e6
            self.arrival_ms.append(ingest_us / 1000 - event_ms)
            self.read_ms.append(now * 1000 - ingest_us / 1000)


def run(log_dir: Path, bootstrap: str, registry: str, symbols: int = 3000, warmup_s: float = 8.0,
        window_s: float = 30.0, env: dict[str, str] | None = None) -> Latency:
    sim = Sim(log_dir, "--symbols", str(symbols), "--interval", "1")
    prefix = f"bench.lag.{uuid.uuid4().hex[:6]}"
    worker = Worker(log_dir, sim, bootstrap, registry, prefix, "!ticker@arr", env)
    topic = f"{prefix}.ticker"
    consumer = None
    try:
        worker.wait_ready()
        consumer = LagConsumer(bootstrap, topic)
        consumer.start()
        time.sleep(warmup_s)
        before, cpu0, t0 = lag_buckets(worker.metrics_text(), topic), cpu_seconds(worker.proc.pid), time.monotonic()
        consumer.recording = True
        time.sleep(window_s)
        consumer.recording = False
        after, cpu1, t1 = lag_buckets(worker.metrics_text(), topic), cpu_seconds(worker.proc.pid), time.monotonic()
        consumer.stopped.set()
        consumer.join(timeout=120)  # it decodes what it received after it stops
        window = {le: after[le] - before.get(le, 0.0) for le in after}
        total = window.get(math.inf, 0.0)
        highest = next((le for le in sorted(window) if window[le] >= total), math.inf) if total else math.nan
        lags = consumer.lags_ms
        return Latency(total / (t1 - t0), histogram_quantile(0.5, window) * 1000,
                       histogram_quantile(0.99, window) * 1000, highest * 1000,
                       quantile(lags, 0.5), quantile(lags, 0.99), max(lags) if lags else math.nan, lags,
                       quantile(consumer.arrival_ms, 0.5), quantile(consumer.arrival_ms, 0.99),
                       100 * (cpu1 - cpu0) / (t1 - t0), peak_rss_mb(worker.proc.pid),
                       quantile(consumer.read_ms, 0.5), quantile(consumer.read_ms, 0.99))
    finally:
        if consumer is not None:
            consumer.stopped.set()
            consumer.join(timeout=10)
        worker.stop()
        sim.stop()


def table(r: Latency) -> str:
    return "\n".join([
        f"Latency at nominal load ({r.records_per_s:,.0f} tickers/s acknowledged, 1 s arrays)",
        f"{'source':<34} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}",
        f"{'worker histogram (event->ack)':<34} {r.worker_p50_ms:>8.1f} {r.worker_p99_ms:>8.1f} "
        f"{'<=' + format(r.worker_max_le_ms, '.0f'):>8}",
        f"{'consumer (event->fetched)':<34} {r.consumer_p50_ms:>8.1f} {r.consumer_p99_ms:>8.1f} "
        f"{r.consumer_max_ms:>8.1f}",
        f"{'  of which event->frame read':<34} {r.arrival_p50_ms:>8.1f} {r.arrival_p99_ms:>8.1f}",
        f"{'  and frame read->fetched':<34} {r.read_p50_ms:>8.1f} {r.read_p99_ms:>8.1f}",
        f"worker CPU {r.cpu_percent:.1f} % of one core, peak RSS {r.peak_rss_mb:.0f} MB"])
