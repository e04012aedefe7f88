"""Every Prometheus metric of the worker, in one place.

The names are the contract of ``../shared/docs/DESIGN.md`` §8: the Grafana dashboard, the alert rules and
docs/metrics.md are built on them. Labels are bounded: reasons, streams and topics come from small fixed
sets or from the configured stream list, never from symbols.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

PREFIX = "binance_ingest_"
REGISTRY = CollectorRegistry(auto_describe=True)
"""The worker's own registry, so tests and embedded uses never see metrics of other libraries."""

# Event lag spans milliseconds (healthy) to minutes (Kafka outage, backlog replay).
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# Producer delivery latency is the librdkafka part only: sub-millisecond to tens of seconds.
PRODUCE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

BUILD_INFO = Info(PREFIX + "build", "Version of the running worker.", registry=REGISTRY)

WS_CONNECTED = Gauge(PREFIX + "ws_connected", "Open WebSocket connections that delivered data.",
                     registry=REGISTRY)
WS_RECONNECTS = Counter(PREFIX + "ws_reconnects_total",
                        "WebSocket reconnects by reason (1006, 1008, 1011, stale, rotation, error, ...).",
                        ["reason"], registry=REGISTRY)
WS_MESSAGES = Counter(PREFIX + "ws_messages_total", "WebSocket data frames received, by stream.",
                      ["stream"], registry=REGISTRY)
WS_SUBSCRIPTIONS = Gauge(PREFIX + "ws_subscribed_streams", "Streams subscribed over all connections.",
                         registry=REGISTRY)

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
LAST_EVENT = Gauge(PREFIX + "last_event_timestamp_seconds", "Exchange event time of the newest record, by stream.",
                   ["stream"], registry=REGISTRY)

SYMBOLS_KNOWN = Gauge(PREFIX + "symbols_known", "Symbols known from exchangeInfo, by status.", ["status"],
                      registry=REGISTRY)
SYMBOLS_LISTED = Counter(PREFIX + "symbols_listed_total", "Symbols that appeared or started TRADING.",
                         registry=REGISTRY)
SYMBOLS_DELISTED = Counter(PREFIX + "symbols_delisted_total", "Symbols that disappeared or stopped TRADING.",
                           registry=REGISTRY)

REST_REQUESTS = Counter(PREFIX + "rest_requests_total", "Binance REST requests by endpoint and HTTP status.",
                        ["endpoint", "status"], registry=REGISTRY)
REST_WEIGHT_USED = Gauge(PREFIX + "rest_weight_used", "Request weight used in the current minute "
                         "(X-MBX-USED-WEIGHT-1M).", registry=REGISTRY)
REST_WEIGHT_LIMIT = Gauge(PREFIX + "rest_weight_limit", "Request weight allowed per minute.", registry=REGISTRY)

SHARDS_OWNED = Gauge(PREFIX + "shards_owned", "Shards this replica streams (1 when not sharded).",
                     registry=REGISTRY)
READY = Gauge(PREFIX + "ready", "1 when connected to Binance and producing to Kafka.", registry=REGISTRY)
