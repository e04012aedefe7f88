"""The Grafana dashboard, as code: one list of panels, each with its PromQL and the labels its result carries.

The JSON in ``helm/binance-ingest/files/dashboard.json`` is generated from :data:`ROWS` and never edited by hand.
The live Prometheus test evaluates every :class:`Query` here and checks its result has the labels declared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# Every query is narrowed by the dashboard's namespace and pod variables (labels a Kubernetes scrape adds).
SEL = 'namespace=~"$namespace", pod=~"$pod"'
RATE = "$__rate_interval"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@dataclass(frozen=True)
class Query:
    """One PromQL target. ``labels``: the labels every result series has (the shape the live test checks);
    ``needs``: the event without which the query has no data (e.g. ``producer_error``), empty when always."""

    expr: str
    legend: str
    labels: tuple[str, ...] = ()
    needs: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    bars: bool = False
    width: int = 12


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)


def _rate(metric: str, by: str = "", fn: str = "rate") -> str:
    inner = f"{fn}({metric}{{{SEL}}}[{RATE}])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def _events(metric: str, by: str) -> str:
    """Events per panel interval of a counter whose labelled series the worker creates at the first event.

    increase() alone never shows that first event (the new series starts at its value), so a series younger than
    the interval counts with its whole value and an older one with its increase, as in the alert rules.
    """
    sel = f"{metric}{{{SEL}}}"
    return f"sum by ({by}) (({sel} unless {sel} offset {RATE}) or increase({sel}[{RATE}]))"


def _quantile(q: float, metric: str, by: str = "") -> str:
    keys = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({keys}) (rate({metric}{{{SEL}}}[{RATE}])))"


ROWS: tuple[Row, ...] = (
    Row("Overview", (
        Panel("Ready replicas", "Replicas whose /readyz is 200: connected to Binance and producing to Kafka.",
              (Query(f"sum(binance_ingest_ready{{{SEL}}})", "ready"),), kind="stat", width=6),
        Panel("Delivering connections", "WebSocket connections that delivered data, over all replicas.",
              (Query(f"sum(binance_ingest_ws_connected{{{SEL}}})", "connections"),), kind="stat", width=6),
        Panel("Shards owned", "Shards streamed by the selected replicas (1 per replica when not sharded).",
              (Query(f"sum(binance_ingest_shards_owned{{{SEL}}})", "shards"),), kind="stat", width=6),
        Panel("Version", "Running versions and how many replicas run each.",
              (Query(f"count by (version) (binance_ingest_build_info{{{SEL}}})", "{{version}}", ("version",)),),
              kind="stat", width=6),
    )),
    Row("Binance", (
        Panel("Connection state", "Connections delivering data and streams subscribed, per replica.", (
            Query(f"sum by (pod) (binance_ingest_ws_connected{{{SEL}}})", "{{pod}} connections", ("pod",)),
            Query(f"sum by (pod) (binance_ingest_ws_subscribed_streams{{{SEL}}})", "{{pod}} streams", ("pod",)),
        )),
        Panel("Reconnects by reason", "WebSocket reconnects: close codes 1006/1008/1011, stale, rotation, error.",
              (Query(_events("binance_ingest_ws_reconnects_total", "reason"), "{{reason}}", ("reason",),
                     needs="reconnect"),), bars=True),
        Panel("Frames/s by stream", "WebSocket data frames received per second.",
              (Query(_rate("binance_ingest_ws_messages_total", "stream"), "{{stream}}", ("stream",)),), unit="ops"),
        Panel("Seconds since last event by stream", "Age of the newest exchange event time produced, per stream.",
              (Query(f"time() - max by (stream) (binance_ingest_last_event_timestamp_seconds{{{SEL}}})",
                     "{{stream}}", ("stream",)),), unit="s"),
        Panel("REST weight used", "Binance request weight used in the current minute, and the limit.", (
            Query(f"max by (pod) (binance_ingest_rest_weight_used{{{SEL}}})", "{{pod}} used", ("pod",)),
            Query(f"max by (pod) (binance_ingest_rest_weight_limit{{{SEL}}})", "{{pod}} limit", ("pod",)),
        )),
        Panel("REST requests by endpoint and status", "Binance REST calls per second; 429/418 mean back off.",
              (Query(_rate("binance_ingest_rest_requests_total", "endpoint, status"), "{{endpoint}} {{status}}",
                     ("endpoint", "status"), needs="rest_request"),), unit="reqps"),
        Panel("Known symbols by status", "Symbols in exchangeInfo by status (TRADING, BREAK, HALT, ...).",
              (Query(f"max by (status) (binance_ingest_symbols_known{{{SEL}}})", "{{status}}", ("status",),
                     needs="exchange_info"),)),
        Panel("Listings and delistings", "Symbols that appeared or started TRADING, and that left or stopped.", (
            Query(_rate("binance_ingest_symbols_listed_total", fn="increase"), "listed"),
            Query(_rate("binance_ingest_symbols_delisted_total", fn="increase"), "delisted"),
        ), bars=True),
    )),
    Row("Scale-out", (
        Panel("Shards per replica", "Coordination shards each replica streams, and how many exist (--coordination "
              "kafka); their sum equals the shard count when every shard has exactly one owner.", (
            Query(f"sum by (pod) (binance_ingest_shards_owned{{{SEL}}})", "{{pod}}", ("pod",)),
            Query(f"max(binance_ingest_coordination_shards{{{SEL}}})", "shards"),
        )),
        Panel("Handovers", "Frames of a revoked shard discarded before its streams were unsubscribed, and snapshot "
              "records not produced because the previous owner's handover note showed them produced.", (
            Query(_rate("binance_ingest_frames_not_owned_total", fn="increase"), "frames discarded after revoke"),
            Query(_rate("binance_ingest_handover_overlap_total", fn="increase"), "snapshot records not repeated"),
        ), bars=True),
    )),
    Row("Kafka", (
        Panel("Tickers/s by topic", "Records acknowledged by Kafka per second.",
              (Query(_rate("binance_ingest_records_produced_total", "topic"), "{{topic}}", ("topic",)),), unit="ops"),
        Panel("Tickers/s accepted by topic and source", "Records accepted for producing: websocket or rest_snapshot.",
              (Query(_rate("binance_ingest_records_accepted_total", "topic, source"), "{{topic}} {{source}}",
                     ("topic", "source")),), unit="ops"),
        Panel("Event lag p50/p99", "Exchange event time to Kafka acknowledgement.", (
            Query(_quantile(0.5, "binance_ingest_event_lag_seconds_bucket", "topic"), "{{topic}} p50", ("topic",)),
            Query(_quantile(0.99, "binance_ingest_event_lag_seconds_bucket", "topic"), "{{topic}} p99", ("topic",)),
        ), unit="s"),
        Panel("Delivery latency p50/p99", "produce() call to Kafka acknowledgement (the producer's share).", (
            Query(_quantile(0.5, "binance_ingest_produce_latency_seconds_bucket"), "p50"),
            Query(_quantile(0.99, "binance_ingest_produce_latency_seconds_bucket"), "p99"),
        ), unit="s"),
        Panel("Drops by reason", "Accepted records that will never reach Kafka. Any value here is a gap.",
              (Query(_events("binance_ingest_records_dropped_total", "reason"), "{{reason}}", ("reason",),
                     needs="drop"),), bars=True),
        Panel("Dead letters by reason", "Frames or records routed to the dead-letter topic.",
              (Query(_events("binance_ingest_deadletter_total", "reason"), "{{reason}}", ("reason",),
                     needs="deadletter"),), bars=True),
        Panel("Duplicates suppressed", "Tickers not produced because their event time was not newer (per second).",
              (Query(_rate("binance_ingest_duplicates_suppressed_total"), "duplicates"),), unit="ops"),
        Panel("Producer queue", "Records not yet acknowledged (worker's count) and librdkafka's queue.", (
            Query(f"sum by (pod) (binance_ingest_producer_queue_messages{{{SEL}}})", "{{pod}} unacknowledged",
                  ("pod",)),
            Query(f"sum by (pod) (binance_ingest_kafka_producer_queue_messages{{{SEL}}})", "{{pod}} librdkafka",
                  ("pod",)),
        )),
        Panel("Producer queue fill", "librdkafka's queue as a fraction of its capacity (queue.buffering.max.*).",
              (Query(f"max by (pod) (binance_ingest_kafka_producer_queue_messages{{{SEL}}} "
                     f"/ binance_ingest_kafka_producer_queue_max_messages{{{SEL}}})", "{{pod}}", ("pod",)),),
              unit="percentunit"),
        Panel("Broker round-trip time", "librdkafka's request round-trip time per broker.", (
            Query(f'max by (broker) (binance_ingest_kafka_broker_rtt_seconds{{{SEL}, stat="p99"}})',
                  "{{broker}} p99", ("broker",)),
            Query(f'max by (broker) (binance_ingest_kafka_broker_rtt_seconds{{{SEL}, stat="avg"}})',
                  "{{broker}} avg", ("broker",)),
        ), unit="s"),
        Panel("Producer errors", "Errors reported by librdkafka, and transmit errors/retries per broker.", (
            Query(_events("binance_ingest_producer_errors_total", "code"), "{{code}}", ("code",),
                  needs="producer_error"),
            Query(_rate("binance_ingest_kafka_broker_tx_errors_total", "broker", "increase"), "{{broker}} tx errors",
                  ("broker",)),
            Query(_rate("binance_ingest_kafka_broker_tx_retries_total", "broker", "increase"),
                  "{{broker}} tx retries", ("broker",)),
        ), bars=True),
        Panel("Brokers up", "1 when librdkafka's connection to the broker is UP.",
              (Query(f"min by (broker) (binance_ingest_kafka_broker_up{{{SEL}}})", "{{broker}}", ("broker",)),)),
    )),
)


def queries() -> list[tuple[str, Query]]:
    """Every (panel title, query) of the dashboard."""
    return [(panel.title, q) for row in ROWS for panel in row.panels for q in panel.queries]


def _variables() -> list[dict[str, Any]]:
    def label_var(name: str, query: str) -> dict[str, Any]:
        return {"name": name, "label": name, "type": "query", "datasource": DATASOURCE,
                "definition": query, "query": {"query": query, "refId": name}, "refresh": 2, "sort": 1,
                "multi": True, "includeAll": True, "allValue": ".*", "current": {}, "hide": 0}

    return [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1},
        label_var("namespace", VARIABLE_QUERIES["namespace"]),
        label_var("pod", VARIABLE_QUERIES["pod"]),
    ]


VARIABLE_QUERIES = {
    "namespace": "label_values(binance_ingest_build_info, namespace)",
    "pod": 'label_values(binance_ingest_build_info{namespace=~"$namespace"}, pod)',
}


def _panel(panel: Panel, panel_id: int, x: int, y: int, height: int) -> dict[str, Any]:
    refs = "ABCDEFGH"
    targets = [{"refId": refs[i], "datasource": DATASOURCE, "expr": q.expr, "legendFormat": q.legend,
                "range": True} for i, q in enumerate(panel.queries)]
    defaults: dict[str, Any] = {"unit": panel.unit}
    if panel.kind == "timeseries":
        defaults["custom"] = {"drawStyle": "bars" if panel.bars else "line", "fillOpacity": 30 if panel.bars else 10,
                              "lineWidth": 1, "showPoints": "never", "spanNulls": False}
        options: dict[str, Any] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                                   "tooltip": {"mode": "multi", "sort": "desc"}}
    else:
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                   "colorMode": "value", "graphMode": "none", "textMode": "value_and_name"}
    return {"id": panel_id, "type": panel.kind, "title": panel.title, "description": panel.description,
            "datasource": DATASOURCE, "gridPos": {"h": height, "w": panel.width, "x": x, "y": y},
            "fieldConfig": {"defaults": defaults, "overrides": []}, "options": options, "targets": targets}


def build() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (schemaVersion 39, Grafana 10+)."""
    panels: list[dict[str, Any]] = []
    panel_id, y = 1, 0
    for row in ROWS:
        panels.append({"id": panel_id, "type": "row", "title": row.title, "collapsed": False, "panels": [],
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
        panel_id, y, x = panel_id + 1, y + 1, 0
        for panel in row.panels:
            height = 4 if panel.kind == "stat" else 8
            if x + panel.width > 24:
                x, y = 0, y + height
            panels.append(_panel(panel, panel_id, x, y, height))
            panel_id, x = panel_id + 1, x + panel.width
        y += 4 if row.panels and row.panels[-1].kind == "stat" else 8
    return {
        "title": "Binance ingest",
        "uid": "binance-ingest",
        "description": "Binance spot tickers to Kafka: connections, throughput, lag, drops, producer, REST weight.",
        "tags": ["binance-ingest", "kafka"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "time": {"from": "now-3h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "version": 1,
        "annotations": {"list": []},
        "templating": {"list": _variables()},
        "panels": panels,
    }


def render() -> str:
    """The file's exact text: stable key order and indentation, so diffs of the JSON stay readable."""
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"
