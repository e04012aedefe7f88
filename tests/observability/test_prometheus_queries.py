"""Every dashboard query and alert expression, evaluated by a real Prometheus scraping ingest.metrics.

The exporter is a separate process (tests/observability/synthetic_exporter.py) that drives the real metric objects
as a healthy worker would, then as a faulty one. The live test with the worker and the simulator is
test_prometheus_live.py; this one needs neither and covers every query, including those that need rare events.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.observability import dashboard

from .prom import Prometheus, grafana_to_promql
from .shapes import ALERT_LABELS, ALERTS, alert_rules, assert_shape

ROOT = Path(__file__).resolve().parents[2]
TARGET_LABELS = {"namespace": "test", "pod": "ingest-0"}


@pytest.fixture(scope="module")
def exporter() -> Iterator[tuple[subprocess.Popen[str], int]]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.observability.synthetic_exporter"], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    port = int(proc.stdout.readline())
    yield proc, port
    proc.stdin.close()
    proc.stdout.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def prom(exporter: tuple[subprocess.Popen[str], int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    _, port = exporter
    server = Prometheus(tmp_path_factory.mktemp("prom"), [(f"127.0.0.1:{port}", TARGET_LABELS)], rule_files=(ALERTS,))
    server.start()
    yield server
    server.stop()


@pytest.mark.slow
def test_queries_and_alerts_against_real_prometheus(exporter: tuple[subprocess.Popen[str], int],
                                                    prom: Prometheus) -> None:
    proc, _ = exporter
    prom.wait_until("the exporter to be scraped", prom.targets_up)
    # rate() needs two scrapes inside the 30 s window; wait for the counters to have moved between two.
    prom.wait_until("rates", lambda: bool(prom.query(
        'rate(binance_ingest_records_produced_total[30s]) > 0')))

    # Healthy: every query that needs no rare event has data of its shape; no alert expression has a result.
    for title, q in dashboard.queries():
        if not q.needs:
            assert_shape(prom.query(grafana_to_promql(q.expr)), set(q.labels), f"{title}: {q.expr}")
    for alert, expr in alert_rules().items():
        assert prom.query(expr) == [], f"{alert} has a result while healthy"
    assert set(prom.alert_states().values()) == {"inactive"}

    # Dashboard variables resolve from the build info metric.
    assert prom.api("label/namespace/values", **{"match[]": "binance_ingest_build_info"}) == ["test"]
    assert prom.api("label/pod/values", **{"match[]": 'binance_ingest_build_info{namespace=~"test"}'}) == ["ingest-0"]

    assert proc.stdin is not None
    proc.stdin.write("fault\n")
    proc.stdin.flush()

    # Faulty: every alert expression returns its labels, and the rule manager has each alert pending or firing.
    exprs = alert_rules()
    assert set(exprs) == set(ALERT_LABELS)
    prom.wait_until("every alert expression to have a result",
                    lambda: all(prom.query(expr) for expr in exprs.values()), timeout=60)
    for alert, expr in exprs.items():
        assert_shape(prom.query(expr), ALERT_LABELS[alert], alert)
    prom.wait_until("every alert to be pending or firing",
                    lambda: set(prom.alert_states().values()) <= {"pending", "firing"}, timeout=30)

    # ... and now every dashboard query has data, including those needing a reconnect, a drop, an error.
    prom.wait_until("every dashboard query to have data", lambda: all(
        prom.query(grafana_to_promql(q.expr)) for _, q in dashboard.queries()), timeout=30)
    for title, q in dashboard.queries():
        assert_shape(prom.query(grafana_to_promql(q.expr)), set(q.labels), f"{title}: {q.expr}")
