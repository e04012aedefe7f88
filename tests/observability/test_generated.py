"""The generated dashboard and metrics docs: fresh, consistent with the metrics, and well-formed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from ingest import metrics
from ingest.observability import __main__ as generator
from ingest.observability import dashboard

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "helm/binance-ingest/files/alerts.yaml"
METRIC_NAME = re.compile(r"\bbinance_ingest_[a-z0-9_]+\b")


def exposed_names() -> set[str]:
    """Every series name the worker can expose (histograms as _bucket/_sum/_count)."""
    names: set[str] = set()
    for m in metrics.catalogue():
        if m.kind == "histogram":
            names.update(m.name + suffix for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(m.name)
    return names


def alert_exprs() -> dict[str, str]:
    doc = yaml.safe_load(ALERTS.read_text())
    return {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"]}


def test_generated_files_are_fresh() -> None:
    assert generator.stale() == [], "run: python -m ingest.observability"


def test_metrics_doc_lists_every_metric_with_type_and_labels() -> None:
    text = (ROOT / "docs/metrics.md").read_text()
    for m in metrics.catalogue():
        (row,) = [line for line in text.splitlines() if line.startswith(f"| `{m.name}` |")]
        assert f"| {m.kind} |" in row
        for label in m.labels:
            assert f"`{label}`" in row


def test_queries_and_alerts_only_use_metrics_that_exist() -> None:
    known = exposed_names()
    used = {name for _, q in dashboard.queries() for name in METRIC_NAME.findall(q.expr)}
    used |= {name for expr in alert_exprs().values() for name in METRIC_NAME.findall(expr)}
    assert used - known == set()


def test_dashboard_covers_what_operators_need() -> None:
    used = " ".join(q.expr for _, q in dashboard.queries())
    for short in ("ws_connected", "ws_reconnects_total", "ws_messages_total", "records_produced_total",
                  "event_lag_seconds_bucket", "produce_latency_seconds_bucket", "records_dropped_total",
                  "deadletter_total", "producer_queue_messages", "kafka_broker_rtt_seconds", "symbols_known",
                  "symbols_listed_total", "symbols_delisted_total", "rest_weight_used", "shards_owned"):
        assert metrics.PREFIX + short in used, short


def test_every_query_is_narrowed_by_namespace_and_pod() -> None:
    for title, q in dashboard.queries():
        for name in METRIC_NAME.findall(q.expr):
            # each metric selector in the expression carries the two variables
            assert re.search(re.escape(name) + r'\{namespace=~"\$namespace", pod=~"\$pod"', q.expr), (title, name)


def test_dashboard_json_is_well_formed() -> None:
    board = json.loads((ROOT / "helm/binance-ingest/files/dashboard.json").read_text())
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "namespace", "pod"}
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"panel {panel['title']} overlaps another"
        cells |= mine
        for target in panel.get("targets", []):
            assert target["expr"] and target["datasource"]["uid"] == "${datasource}"


def test_every_expression_parses_with_promtool(tmp_path: Path) -> None:
    """promtool has no 'check query'; a rules file with each expression as a recording rule is parsed by it."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run bash .ci/setup"
    exprs = [q.expr.replace("$__rate_interval", "1m").replace("$namespace", ".*").replace("$pod", ".*")
             for _, q in dashboard.queries()]
    exprs += list(alert_exprs().values())
    rules = {"groups": [{"name": "all", "rules": [{"record": f"check:expr{i}", "expr": e}
                                                   for i, e in enumerate(exprs)]}]}
    path = tmp_path / "exprs.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout
