"""Every Prometheus metric of the worker, in one place.

The names are the contract of ``../shared/docs/DESIGN.md`` §8: the Grafana dashboard, the alert rules and
docs/metrics.md are built on them. Labels are bounded: reasons, streams and topics come from small fixed
sets or from the configured stream list, never from symbols.
"""

from __future__ import annotations

import asyncio
import json
import logging
import platform
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, ProcessCollector, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)


class _Defined:
    """Remembers the label names a metric is defined with, for :func:`catalogue` (docs/metrics.md):
    prometheus_client keeps them only in private attributes. Children made by ``.labels()`` pass through too."""

    label_names: tuple[str, ...] = ()

    def __init__(self, name: str, documentation: str, labelnames: Iterable[str] = (), **kwargs: Any) -> None:
        super().__init__(name, documentation, labelnames, **kwargs)  # type: ignore[call-arg]
        self.label_names = tuple(labelnames)


class Counter(_Defined, prometheus_client.Counter):
    """A prometheus_client Counter that remembers its label names."""


class Gauge(_Defined, prometheus_client.Gauge):
    """A prometheus_client Gauge that remembers its label names."""


class Histogram(_Defined, prometheus_client.Histogram):
    """A prometheus_client Histogram that remembers its label names."""


class Info(_Defined, prometheus_client.Info):
    """A prometheus_client Info that remembers its label names."""


PREFIX = "binance_ingest_"
REGISTRY = CollectorRegistry(auto_describe=True)
"""The worker's own registry, so tests and embedded uses never see metrics of other libraries."""
# The process collector's process_* series (CPU seconds, resident memory, open fds, start time): what a dashboard
# needs to see a leak or a busy loop, without node-level metrics.
ProcessCollector(registry=REGISTRY)
# No `<counter>_created` series: they double the number of series and no dashboard or alert uses them.
disable_created_metrics()

# Event lag spans milliseconds (healthy) to minutes (Kafka outage, backlog replay). Fine steps up to 250 ms so
# that a p99 near the 50 ms goal can be stated from the histogram (with 50/100/250 only, it was interpolation).
LAG_BUCKETS = (0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.06, 0.075, 0.1, 0.15, 0.2, 0.25,
               0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# Producer delivery latency is the librdkafka part only: sub-millisecond to tens of seconds.
PRODUCE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

BUILD_INFO = Info(PREFIX + "build", "Version of the running worker, Python and librdkafka (value always 1).",
                  registry=REGISTRY)
BUILD_INFO_LABELS = ("version", "python", "librdkafka")

WS_CONNECTED = Gauge(PREFIX + "ws_connected", "Open WebSocket connections that delivered data.",
                     registry=REGISTRY)
WS_RECONNECTS = Counter(PREFIX + "ws_reconnects_total",
                        "WebSocket reconnects by reason (1006, 1008, 1011, stale, rotation, server_shutdown, "
                        "http_451/403/429/418 on the handshake, error, ...).",
                        ["reason"], registry=REGISTRY)
WS_MESSAGES = Counter(PREFIX + "ws_messages_total", "WebSocket data frames received, by stream.",
                      ["stream"], registry=REGISTRY)
WS_SUBSCRIPTIONS = Gauge(PREFIX + "ws_subscribed_streams", "Streams subscribed over all connections.",
                         registry=REGISTRY)
WS_SERVER_SHUTDOWNS = Counter(PREFIX + "ws_server_shutdowns_total",
                              "serverShutdown events received: each starts a make-before-break replacement of its "
                              "connection (counted as reconnect reason server_shutdown once it is done).",
                              registry=REGISTRY)
WS_CONNECT_ATTEMPTS = Counter(PREFIX + "ws_connect_attempts_total",
                              "WebSocket connection attempts (handshakes started), the number Binance limits per IP "
                              "(300 per 5 minutes) and --max-connection-attempts budgets.", registry=REGISTRY)
WS_CONNECT_BUDGET_WAITS = Counter(PREFIX + "ws_connect_budget_waits_total",
                                  "Connection attempts that waited because --max-connection-attempts were spent "
                                  "in the sliding window.", registry=REGISTRY)
WS_CONNECT_BUDGET_WAIT_SECONDS = Counter(PREFIX + "ws_connect_budget_wait_seconds_total",
                                         "Seconds connection attempts waited for the attempt budget.",
                                         registry=REGISTRY)
LOCATION_REFUSED = Gauge(PREFIX + "location_refused",
                         "1 while Binance refuses this location (HTTP 451 on the WebSocket handshake or REST), by "
                         "source (websocket, rest); the worker retries every --location-refused-retry-s.",
                         ["source"], registry=REGISTRY)

RECORDS_PRODUCED = Counter(PREFIX + "records_produced_total", "Records acknowledged by Kafka, by topic.",
                           ["topic"], registry=REGISTRY)
RECORDS_ACCEPTED = Counter(PREFIX + "records_accepted_total",
                           "Ticker records parsed and accepted for producing, by topic and source.",
                           ["topic", "source"], registry=REGISTRY)
RECORDS_DROPPED = Counter(PREFIX + "records_dropped_total",
                          "Accepted records that will never reach Kafka, by reason.", ["reason"],
                          registry=REGISTRY)
DEADLETTER = Counter(PREFIX + "deadletter_total", "Frames or records sent to the dead-letter topic, by reason.",
                     ["reason"], registry=REGISTRY)
DUPLICATES_SUPPRESSED = Counter(PREFIX + "duplicates_suppressed_total",
                                "Tickers not produced because their event time was not newer than the last "
                                "one produced for the symbol.", registry=REGISTRY)
EVENT_LAG = Histogram(PREFIX + "event_lag_seconds", "Exchange event time to Kafka acknowledgement.",
                      ["topic"], buckets=LAG_BUCKETS, registry=REGISTRY)
PRODUCE_LATENCY = Histogram(PREFIX + "produce_latency_seconds", "produce() call to Kafka acknowledgement.",
                            buckets=PRODUCE_BUCKETS, registry=REGISTRY)
PRODUCER_QUEUE = Gauge(PREFIX + "producer_queue_messages",
                       "Records handed to the producer and not yet acknowledged.", registry=REGISTRY)
PRODUCER_ERRORS = Counter(PREFIX + "producer_errors_total", "Producer errors reported by librdkafka, by code.",
                          ["code"], registry=REGISTRY)
LAST_EVENT = Gauge(PREFIX + "last_event_timestamp_seconds", "Exchange event time of the newest record, by stream; "
                   "until a stream's first record, the time it was subscribed (a stream that never delivers ages "
                   "like one that stopped).", ["stream"], registry=REGISTRY)

SYMBOLS_KNOWN = Gauge(PREFIX + "symbols_known", "Symbols known from exchangeInfo, by status.", ["status"],
                      registry=REGISTRY)
SYMBOLS_LISTED = Counter(PREFIX + "symbols_listed_total", "Symbols that appeared or started TRADING.",
                         registry=REGISTRY)
SYMBOLS_DELISTED = Counter(PREFIX + "symbols_delisted_total", "Symbols that disappeared or stopped TRADING.",
                           registry=REGISTRY)
SYMBOLS_SKIPPED = Counter(PREFIX + "symbols_skipped_total",
                          "TRADING symbols a stream pattern would subscribe but whose name cannot be a stream name "
                          "(counted once per symbol; each is logged as a warning).", registry=REGISTRY)

REST_REQUESTS = Counter(PREFIX + "rest_requests_total", "Binance REST requests by endpoint and HTTP status.",
                        ["endpoint", "status"], registry=REGISTRY)
REST_WEIGHT_USED = Gauge(PREFIX + "rest_weight_used", "Request weight used in the current minute "
                         "(X-MBX-USED-WEIGHT-1M).", registry=REGISTRY)
REST_WEIGHT_LIMIT = Gauge(PREFIX + "rest_weight_limit", "Request weight allowed per minute.", registry=REGISTRY)

SHARDS_OWNED = Gauge(PREFIX + "shards_owned", "Shards (coordination topic partitions) this replica streams; "
                     "1 when not coordinated, 0 on a replica that owns none.", registry=REGISTRY)
COORDINATION_SHARDS = Gauge(PREFIX + "coordination_shards", "Shards (coordination topic partitions) of a coordinated "
                            "replica's group; 0 when not coordinated.", registry=REGISTRY)
FRAMES_NOT_OWNED = Counter(PREFIX + "frames_not_owned_total",
                           "Frames of a shard revoked from this replica that arrived before its streams were "
                           "unsubscribed; discarded unread (the shard's new owner restores the state).",
                           registry=REGISTRY)
TICKERS_NOT_OWNED = Counter(PREFIX + "tickers_not_owned_total",
                            "Tickers in the frames counted by frames_not_owned_total (event markers counted, the "
                            "frame is not parsed): what a handover discarded, for the accounting identity.",
                            registry=REGISTRY)
FRAMES_FAILED = Counter(PREFIX + "frames_failed_total",
                        "Frames lost to an unexpected error inside the pipeline (a bug: the traceback is logged); the "
                        "connection stays up, the next snapshot restores the state.", ["stream"], registry=REGISTRY)
HANDOVER_OVERLAP = Counter(PREFIX + "handover_overlap_total",
                           "Snapshot records a replica did not produce after gaining a shard, because the previous "
                           "owner's handover note shows it already produced them (same symbol, event time not "
                           "newer).", registry=REGISTRY)
READY = Gauge(PREFIX + "ready", "1 when connected to Binance and producing to Kafka.", registry=REGISTRY)
SNAPSHOT_RECORDS = Counter(PREFIX + "snapshot_records_total",
                           "Ticker records built from REST snapshots, by topic, before the dedupe: each is accepted "
                           "(records_accepted_total{source=rest_snapshot}) or suppressed as not newer.", ["topic"],
                           registry=REGISTRY)

# --- runtime gauges: what a soak run watches for growth (bench/soak.py, docs/reliability.md) ------------------------
ASYNCIO_TASKS = Gauge(PREFIX + "asyncio_tasks", "Tasks alive in the worker's event loop (growth over days is a leak).",
                      registry=REGISTRY)
SYMBOL_STATE = Gauge(PREFIX + "symbol_state_entries",
                     "Per-symbol state held: last event time per (kind, symbol) of the dedupe; follows the universe.",
                     registry=REGISTRY)
WS_CONNECTION_OBJECTS = Gauge(PREFIX + "ws_connection_objects",
                              "WebSocket connection objects still in memory (open, closing or not yet collected); "
                              "growth with reconnects means something keeps closed connections alive.",
                              registry=REGISTRY)
_CONNECTION_OBJECTS: weakref.WeakSet[object] = weakref.WeakSet()
WS_CONNECTION_OBJECTS.set_function(lambda: float(len(_CONNECTION_OBJECTS)))


def track_connection(conn: object) -> None:
    """Count ``conn`` in ``ws_connection_objects`` until it is garbage collected (a weak reference: free)."""
    _CONNECTION_OBJECTS.add(conn)


def watch_runtime(loop: asyncio.AbstractEventLoop, symbol_state: Callable[[], int]) -> None:
    """Export the loop's task count and the per-symbol state size, computed at scrape time (nothing on the hot
    path). ``all_tasks`` is read from the metrics thread; it retries internally if the set changes meanwhile."""
    ASYNCIO_TASKS.set_function(lambda: float(len(asyncio.all_tasks(loop))))
    SYMBOL_STATE.set_function(lambda: float(symbol_state()))

# --- librdkafka statistics ------------------------------------------------------------------------------------------
# The producer passes librdkafka's stats_cb JSON (statistics.interval.ms) to observe_librdkafka_stats(). Those numbers
# are snapshots owned by librdkafka (its counters are cumulative since the client started), so they are exported by a
# collector that re-emits the newest snapshot on every scrape: brokers that left the cluster disappear with it, and
# librdkafka's cumulative counters stay counters (Prometheus' rate() handles the reset when the producer restarts).


@dataclass(frozen=True)
class StatsMetric:
    """One metric derived from librdkafka statistics: its name, type, labels and help line."""

    name: str
    kind: str  # "gauge" or "counter"
    labels: tuple[str, ...]
    doc: str


LIBRDKAFKA_METRICS: tuple[StatsMetric, ...] = (
    StatsMetric(PREFIX + "kafka_producer_queue_messages", "gauge", (),
                "Messages in librdkafka's producer queue (msg_cnt): waiting to be sent or acknowledged."),
    StatsMetric(PREFIX + "kafka_producer_queue_bytes", "gauge", (),
                "Bytes in librdkafka's producer queue (msg_size)."),
    StatsMetric(PREFIX + "kafka_producer_queue_max_messages", "gauge", (),
                "Capacity of librdkafka's producer queue in messages (msg_max, queue.buffering.max.messages)."),
    StatsMetric(PREFIX + "kafka_producer_queue_max_bytes", "gauge", (),
                "Capacity of librdkafka's producer queue in bytes (msg_size_max)."),
    StatsMetric(PREFIX + "kafka_stats_timestamp_seconds", "gauge", (),
                "Wall-clock time of the newest librdkafka statistics snapshot (shows when stats stop arriving)."),
    StatsMetric(PREFIX + "kafka_broker_up", "gauge", ("broker",),
                "1 when librdkafka's connection to the broker is in state UP, else 0."),
    StatsMetric(PREFIX + "kafka_broker_rtt_seconds", "gauge", ("broker", "stat"),
                "Broker round-trip time of the newest statistics window with requests; stat is avg, p50 or p99."),
    StatsMetric(PREFIX + "kafka_broker_outbuf_messages", "gauge", ("broker",),
                "Messages waiting in librdkafka's send buffer for the broker (outbuf_msg_cnt)."),
    StatsMetric(PREFIX + "kafka_broker_inflight_messages", "gauge", ("broker",),
                "Messages sent to the broker and awaiting a response (waitresp_msg_cnt)."),
    StatsMetric(PREFIX + "kafka_broker_tx_errors_total", "counter", ("broker",),
                "Transmission errors towards the broker (txerrs)."),
    StatsMetric(PREFIX + "kafka_broker_tx_retries_total", "counter", ("broker",),
                "Requests re-sent to the broker (txretries)."),
    StatsMetric(PREFIX + "kafka_broker_request_timeouts_total", "counter", ("broker",),
                "Requests to the broker that timed out (req_timeouts)."),
    StatsMetric(PREFIX + "kafka_broker_disconnects_total", "counter", ("broker",),
                "Connections to the broker that were lost (disconnects)."),
)
_STATS_BY_NAME = {m.name: m for m in LIBRDKAFKA_METRICS}
_RTT_STATS = ("avg", "p50", "p99")
_TOP_LEVEL = {  # metric name -> key in the top-level statistics object
    PREFIX + "kafka_producer_queue_messages": "msg_cnt",
    PREFIX + "kafka_producer_queue_bytes": "msg_size",
    PREFIX + "kafka_producer_queue_max_messages": "msg_max",
    PREFIX + "kafka_producer_queue_max_bytes": "msg_size_max",
}
_PER_BROKER = {  # metric name -> key in each brokers[...] object
    PREFIX + "kafka_broker_outbuf_messages": "outbuf_msg_cnt",
    PREFIX + "kafka_broker_inflight_messages": "waitresp_msg_cnt",
    PREFIX + "kafka_broker_tx_errors_total": "txerrs",
    PREFIX + "kafka_broker_tx_retries_total": "txretries",
    PREFIX + "kafka_broker_request_timeouts_total": "req_timeouts",
    PREFIX + "kafka_broker_disconnects_total": "disconnects",
}


def _family(spec: StatsMetric) -> GaugeMetricFamily | CounterMetricFamily:
    if spec.kind == "counter":
        return CounterMetricFamily(spec.name, spec.doc, labels=spec.labels)
    return GaugeMetricFamily(spec.name, spec.doc, labels=spec.labels)


class LibrdkafkaStatsCollector(Collector):
    """Exports the newest librdkafka statistics snapshot; thread-safe because stats_cb runs in poll()'s thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats: dict[str, Any] | None = None
        self._received_at = 0.0
        self._rtt: dict[str, dict[str, float]] = {}  # broker -> newest measured rtt window

    def update(self, stats: dict[str, Any]) -> None:
        with self._lock:
            self._stats = stats
            self._received_at = time.time()
            # A window without requests to a broker reports rtt 0, which is no measurement: keep the newest
            # real one, so the RTT panel shows the last known round trip instead of flickering to nothing.
            for broker in _real_brokers(stats):
                rtt = broker.get("rtt") or {}
                if rtt.get("cnt"):
                    self._rtt[str(broker.get("name", "?"))] = {
                        stat: rtt[stat] / 1e6 for stat in _RTT_STATS if isinstance(rtt.get(stat), int | float)}

    def reset(self) -> None:
        """Forget the snapshot (tests, or a producer that was closed for good)."""
        with self._lock:
            self._stats = None
            self._rtt = {}

    def describe(self) -> list[Metric]:
        return [_family(spec) for spec in LIBRDKAFKA_METRICS]

    def collect(self) -> list[Metric]:
        with self._lock:
            stats, received_at, rtts = self._stats, self._received_at, dict(self._rtt)
        if stats is None:
            return []
        families = {spec.name: _family(spec) for spec in LIBRDKAFKA_METRICS}
        for name, key in _TOP_LEVEL.items():
            if isinstance(stats.get(key), int | float):
                families[name].add_metric([], float(stats[key]))
        families[PREFIX + "kafka_stats_timestamp_seconds"].add_metric([], received_at)
        for broker in _real_brokers(stats):
            label = str(broker.get("name", "?"))
            families[PREFIX + "kafka_broker_up"].add_metric([label], 1.0 if broker.get("state") == "UP" else 0.0)
            for stat, seconds in rtts.get(label, {}).items():  # librdkafka reports microseconds
                families[PREFIX + "kafka_broker_rtt_seconds"].add_metric([label, stat], seconds)
            for name, key in _PER_BROKER.items():
                if isinstance(broker.get(key), int | float):
                    families[name].add_metric([label], float(broker[key]))
        return [family for family in families.values() if family.samples]


def _real_brokers(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """Brokers of the cluster, without librdkafka's internal pseudo-broker (it never talks to the network)."""
    brokers = stats.get("brokers") or {}
    return [b for b in brokers.values() if isinstance(b, dict) and b.get("source") != "internal"]


LIBRDKAFKA_STATS = LibrdkafkaStatsCollector()
REGISTRY.register(LIBRDKAFKA_STATS)


def observe_librdkafka_stats(stats_json: str) -> None:
    """Take one librdkafka ``stats_cb`` JSON document; a malformed one is logged and ignored, never raised,
    because it arrives inside librdkafka's poll loop where an exception would disturb delivery callbacks."""
    try:
        stats = json.loads(stats_json)
    except (TypeError, ValueError) as exc:
        log.warning("ignoring malformed librdkafka statistics", extra={"reason": str(exc)[:200]})
        return
    if not isinstance(stats, dict):
        log.warning("ignoring librdkafka statistics that are not an object")
        return
    LIBRDKAFKA_STATS.update(stats)


# --- build info -----------------------------------------------------------------------------------------------------


def set_build_info() -> None:
    """Publish the worker's version (and its runtimes') as ``binance_ingest_build_info{version=...} 1``."""
    from ingest import __version__

    try:
        import confluent_kafka

        librdkafka = confluent_kafka.libversion()[0]
    except ImportError:  # pragma: no cover - confluent-kafka is a hard dependency
        librdkafka = "unknown"
    values = {"version": __version__, "python": platform.python_version(), "librdkafka": librdkafka}
    BUILD_INFO.info({key: values[key] for key in BUILD_INFO_LABELS})


# --- catalogue (docs/metrics.md is generated from it) ---------------------------------------------------------------


@dataclass(frozen=True)
class MetricDoc:
    """What docs/metrics.md says about one metric."""

    name: str
    kind: str
    labels: tuple[str, ...]
    doc: str


def catalogue() -> list[MetricDoc]:
    """Every metric this module defines, in definition order, as exposed (names with their suffixes)."""
    docs: list[MetricDoc] = []
    for value in list(globals().values()):
        if isinstance(value, _Defined) and isinstance(value, MetricWrapperBase):
            (family,) = value.describe()  # public: the family's name (no suffix), type and help
            kind, name, labels = family.type, family.name, value.label_names
            if kind == "counter":
                name += "_total"
            elif kind == "info":
                name, labels = name + "_info", BUILD_INFO_LABELS
            docs.append(MetricDoc(name, kind, labels, family.documentation))
    docs.extend(MetricDoc(m.name, m.kind, m.labels, m.doc) for m in LIBRDKAFKA_METRICS)
    return docs


# --- the HTTP server: /metrics, /healthz, /readyz -------------------------------------------------------------------

Readiness = Callable[[], tuple[bool, dict[str, Any]]]


class _Handler(BaseHTTPRequestHandler):
    """Serves the three paths; anything else is 404. One instance per request (http.server's model)."""

    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(HTTPStatus.OK, encoder(REGISTRY), content_type)
        elif path == "/healthz":
            self._send(HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8")
        elif path == "/readyz":
            ready, details = self.server.check_readiness()
            body = json.dumps({"ready": ready, **details}, sort_keys=True).encode() + b"\n"
            status = HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
            self._send(status, body, "application/json")
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found: try /metrics, /healthz or /readyz\n",
                       "text/plain; charset=utf-8")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the log; errors still reach log_error at DEBUG."""
        log.debug("metrics http: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a slow scraper never keeps the process alive at shutdown

    def __init__(self, address: tuple[str, int], readiness: Readiness) -> None:
        super().__init__(address, _Handler)
        self._readiness = readiness

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up is routine, not a traceback on stderr.

        ``curl -f`` closes at once on a 503 from /readyz without reading the body, and a probe that times out does
        the same: the kernel answers with a reset and the keep-alive loop's next read fails. socketserver's default
        prints that as a traceback to stderr; anything other than a dropped connection still reaches the log.
        """
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.debug("metrics http: client %s went away: %r", client_address, exc)
            return
        log.warning("metrics http: request from %s failed", client_address, exc_info=True)

    def check_readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ask the worker; a failing readiness callable means not ready, with the error as the reason."""
        try:
            ready, details = self._readiness()
        except Exception as exc:
            log.warning("readiness check failed", extra={"reason": repr(exc)[:200]})
            return False, {"reasons": [f"readiness check failed: {exc!r}"[:200]]}
        return bool(ready), dict(details)


class MetricsServer:
    """The worker's HTTP endpoints on one port, served from a background thread.

    ``/metrics`` serves :data:`REGISTRY`; ``/healthz`` answers 200 while the process lives (a liveness probe that
    must not depend on Binance or Kafka, or Kubernetes would restart a healthy pod during an exchange outage);
    ``/readyz`` answers 200 or 503 with the JSON the ``readiness`` callable returns.
    """

    def __init__(self, host: str, port: int, readiness: Readiness) -> None:
        self.host = host
        self.port = port
        self._readiness = readiness
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Bind and serve; returns the bound port (useful with port 0)."""
        if self._server is not None:
            raise RuntimeError("MetricsServer already started")
        self._server = _Server((self.host, self.port), self._readiness)
        server = self._server
        READY.set_function(lambda: 1.0 if server.check_readiness()[0] else 0.0)  # fresh at every scrape
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="metrics-http", daemon=True)
        self._thread.start()
        return self.port

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            READY.set_function(lambda: 0.0)
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
