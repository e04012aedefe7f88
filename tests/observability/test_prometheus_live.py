"""The worker under faults, scraped by a real Prometheus: metrics move as each fault implies, and every dashboard
query and alert expression answers with data of its shape.

Real servers only: the stack fixture's Kafka + registry, the exchange simulator (``ingest sim``), ``ingest run``
as subprocesses (two replicas: ``ingest-0`` normal, ``ingest-1`` started later with a 3-record buffer and the
drop_newest policy, i.e. a full buffer), and Debian's Prometheus scraping both every second with the alert rules
loaded. The range data of the main panels is written to ``panels.json`` (and to ``$INGEST_PANELS_JSON`` when set)
for ``python -m ingest.observability.panels_png``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ingest.observability import dashboard

from .prom import Prometheus, grafana_to_promql
from .shapes import ALERT_LABELS, ALERTS, alert_rules, assert_shape, values, without_threshold

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]

STATS_EVERY_SECOND = {"INGEST_KAFKA_STATISTICS_INTERVAL_MS": "1000"}
POD0 = {"namespace": "live", "pod": "ingest-0"}
POD1 = {"namespace": "live", "pod": "ingest-1"}
# Queries whose data needs an event this test causes only in its fault phase, or never (no Kafka outage here:
# the stack is shared by the session; producer errors are covered by test_prometheus_queries.py and promtool).
FAULT_NEEDS = {"reconnect", "drop", "deadletter"}
NOT_CAUSED = {"producer_error"}
PANEL_EXPORTS = {  # the main panels, as plotted by ingest/observability/panels_png.py
    "tickers_per_s": "Tickers/s by topic",
    "event_lag": "Event lag p50/p99",
    "reconnects": "Reconnects by reason",
}


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[..., Prometheus]]:
    started: list[Prometheus] = []

    def start(targets: list[tuple[str, dict[str, str]]]) -> Prometheus:
        prom = Prometheus(tmp_path / f"prom{len(started)}", targets, rule_files=(ALERTS,))
        started.append(prom)
        return prom.start()

    yield start
    for prom in started:
        prom.stop()


def scraped(worker, name: str, **labels: str) -> float:
    """A worker's metric, 0 while its metrics server is not listening yet."""
    try:
        return worker.metric(name, **labels)
    except OSError:
        return 0.0


def has_data(prom: Prometheus, expr: str) -> bool:
    return bool(prom.query(expr))


def test_metrics_move_under_faults_and_every_query_answers(sim_factory, worker_factory, prometheus, unique_prefix,
                                                            tmp_path: Path) -> None:
    started = time.time()
    sim = sim_factory(symbols=20, interval=0.25, seed=11)
    common = ["--streams", "!miniTicker@arr,!ticker@arr", "--ws-url", sim.ws_url, "--rest-url", sim.http_url,
              "--topic-prefix", unique_prefix, "--backoff-initial-s", "0.2", "--backoff-max-s", "1",
              "--exchange-info-refresh-s", "2"]
    w0 = worker_factory(*common, env=STATS_EVERY_SECOND)
    w0.wait_ready()
    prom = prometheus([(f"127.0.0.1:{w0.metrics_port}", POD0)])
    prom.wait_until("the worker to be scraped", prom.targets_up)
    prom.wait_until("tickers/s and broker RTT", lambda: has_data(
        prom, "sum(rate(binance_ingest_records_produced_total[30s])) > 0") and has_data(
        prom, 'binance_ingest_kafka_broker_rtt_seconds{stat="p99"}'), timeout=60)

    # --- healthy: no alert expression has a result; every query that needs no fault has data of its shape ---
    for alert, expr in alert_rules().items():
        assert prom.query(expr) == [], f"{alert} has a result while the worker is healthy"
    assert set(prom.alert_states().values()) == {"inactive"}
    for title, q in dashboard.queries():
        if q.needs not in FAULT_NEEDS | NOT_CAUSED:
            assert_shape(prom.query(grafana_to_promql(q.expr)), set(q.labels), f"healthy {title}: {q.expr}")
    assert prom.api("label/pod/values", **{"match[]": 'binance_ingest_build_info{namespace=~"live"}'}) == ["ingest-0"]

    # --- faults, and the metrics each one must move (read from /metrics directly) ---
    reconnects = w0.metric("binance_ingest_ws_reconnects_total", reason="1011")
    for _ in range(6):  # a 1011 storm: each close once the worker delivers again
        w0.wait_for(lambda: w0.metric("binance_ingest_ws_connected") >= 1, 20, "a delivering connection")
        target = w0.metric("binance_ingest_ws_reconnects_total", reason="1011") + 1
        sim.fault("close", code=1011)
        w0.wait_for(lambda t=target: w0.metric("binance_ingest_ws_reconnects_total", reason="1011") >= t, 20,
                    "a reconnect counted with reason 1011")
    assert w0.metric("binance_ingest_ws_reconnects_total", reason="1011") >= reconnects + 6

    w0.wait_for(lambda: w0.metric("binance_ingest_ws_connected") >= 1, 20, "a delivering connection")
    dead_letters = w0.metric("binance_ingest_deadletter_total")
    sim.fault("malformed", kind="invalid_json", count=15)
    w0.wait_for(lambda: w0.metric("binance_ingest_deadletter_total") >= dead_letters + 15, 20,
                "15 dead letters for 15 malformed frames")

    lag_count = w0.metric("binance_ingest_event_lag_seconds_count")
    slow_lags = w0.metric("binance_ingest_event_lag_seconds_count") - w0.metric(
        "binance_ingest_event_lag_seconds_bucket", le="5.0")
    sim.fault("slow", delay_ms=2500, seconds=8)  # frames queue up at the exchange: lag of seconds
    w0.wait_for(lambda: w0.metric("binance_ingest_event_lag_seconds_count") - w0.metric(
        "binance_ingest_event_lag_seconds_bucket", le="5.0") > slow_lags, 40, "records with more than 5 s lag")
    assert w0.metric("binance_ingest_event_lag_seconds_count") > lag_count > 0

    w1 = worker_factory(*common, "--buffer-max-messages", "3", "--buffer-policy", "drop_newest",
                        env=STATS_EVERY_SECOND)
    w1.wait_for(lambda: scraped(w1, "binance_ingest_records_dropped_total", reason="buffer_full") > 0, 60,
                "drops from the full buffer")
    prom.add_target(f"127.0.0.1:{w1.metrics_port}", POD1)

    # --- Prometheus: the alerts these faults imply have results of their shape and are pending or firing ---
    exprs = alert_rules()
    expected = {"BinanceIngestReconnectStorm": POD0, "BinanceIngestDeadLettersRising": POD0,
                "BinanceIngestEventLagHigh": POD0, "BinanceIngestRecordsDropped": POD1}
    for alert, pod in expected.items():
        prom.wait_until(f"{alert} for {pod['pod']}", lambda e=exprs[alert], p=pod["pod"]: any(
            s["metric"]["pod"] == p for s in prom.query(e)), timeout=60)
        assert_shape(prom.query(exprs[alert]), ALERT_LABELS[alert], alert)
    prom.wait_until("the rule manager to raise them", lambda: all(
        prom.alert_states()[a] in {"pending", "firing"} for a in expected), timeout=30)

    # The exchange goes away: both replicas lose their connections.
    sim.stop()
    prom.wait_until("BinanceIngestDisconnected", lambda: {s["metric"]["pod"] for s in prom.query(
        exprs["BinanceIngestDisconnected"])} == {"ingest-0", "ingest-1"}, timeout=60)
    assert_shape(prom.query(exprs["BinanceIngestDisconnected"]), ALERT_LABELS["BinanceIngestDisconnected"],
                 "BinanceIngestDisconnected")
    prom.wait_until("BinanceIngestDisconnected pending", lambda: prom.alert_states()[
        "BinanceIngestDisconnected"] in {"pending", "firing"}, timeout=30)

    # Alerts whose fault takes minutes (no data for 120 s) or is not caused here: the quantity behind the threshold
    # has data of the alert's shape and a plausible value; the full expression evaluates (to nothing).
    no_data = without_threshold(exprs["BinanceIngestNoData"])
    prom.wait_until("the newest event to age", lambda: min(values(prom.query(no_data)) or [0]) > 3, timeout=30)
    assert_shape(prom.query(no_data), ALERT_LABELS["BinanceIngestNoData"], "no-data age")
    weight = without_threshold(exprs["BinanceIngestRestWeightNearLimit"])
    assert_shape(prom.query(weight), ALERT_LABELS["BinanceIngestRestWeightNearLimit"], "REST weight fraction")
    assert all(0 < v <= 1 for v in values(prom.query(weight)))
    assert prom.query(exprs["BinanceIngestProducerErrors"]) == []

    # --- every dashboard query now has data of its shape (producer errors excepted, see NOT_CAUSED) ---
    for title, q in dashboard.queries():
        if q.needs not in NOT_CAUSED:
            assert_shape(prom.query(grafana_to_promql(q.expr)), set(q.labels), f"{title}: {q.expr}")
        else:
            prom.query(grafana_to_promql(q.expr))  # still a valid query

    export_panels(prom, started, tmp_path)


def export_panels(prom: Prometheus, start: float, tmp_path: Path) -> None:
    """The main panels' range data of this run, for ingest/observability/panels_png.py."""
    by_title = {title: [] for title in PANEL_EXPORTS.values()}
    for title, q in dashboard.queries():
        if title in by_title:
            by_title[title].append(q)
    end = time.time()
    out: dict[str, list[dict]] = {}
    for key, title in PANEL_EXPORTS.items():
        out[key] = [{"legend": q.legend, "series": prom.query_range(grafana_to_promql(q.expr, "5s"), start, end)}
                    for q in by_title[title]]
        assert any(entry["series"] for entry in out[key]), key
    text = json.dumps({"start": start, "end": end, "panels": out})
    (tmp_path / "panels.json").write_text(text)
    if os.environ.get("INGEST_PANELS_JSON"):
        Path(os.environ["INGEST_PANELS_JSON"]).write_text(text)
