"""What a query result must look like: shared by the Prometheus tests (synthetic exporter and live worker)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "helm/binance-ingest/files/alerts.yaml"

# The labels each alert expression's result carries (its aggregation), before Prometheus adds the rule's labels.
ALERT_LABELS = {
    "BinanceIngestDisconnected": {"namespace", "pod"},
    "BinanceIngestNoData": {"namespace", "pod", "stream"},
    "BinanceIngestEventLagHigh": {"namespace", "pod", "topic"},
    "BinanceIngestRecordsDropped": {"namespace", "pod", "reason"},
    "BinanceIngestDeadLettersRising": {"namespace", "pod", "reason"},
    "BinanceIngestReconnectStorm": {"namespace", "pod"},
    "BinanceIngestRestWeightNearLimit": {"namespace", "pod"},
    "BinanceIngestLocationRefused": {"namespace", "pod"},
    "BinanceIngestProducerErrors": {"namespace", "pod", "code"},
    "BinanceIngestShardOwnership": {"namespace"},
}


def alert_rules() -> dict[str, str]:
    """Alert name -> expression, from the one rules file."""
    doc = yaml.safe_load(ALERTS.read_text())
    return {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"]}


def without_threshold(expr: str) -> str:
    """``<quantity> > 120`` -> ``<quantity>``: the measured value behind an alert, to check when it is not firing."""
    stripped = re.sub(r"\s*>\s*[0-9.]+\s*$", "", expr.strip())
    assert stripped != expr.strip(), f"no trailing threshold in {expr!r}"
    return stripped


def values(result: list[dict[str, Any]]) -> list[float]:
    return [float(sample["value"][1]) for sample in result]


def assert_shape(result: list[dict[str, Any]], labels: set[str], what: str) -> None:
    """Non-empty; every series has exactly ``labels``; every value is a number (NaN only where no data flowed)."""
    assert result, f"{what}: no data"
    for sample in result:
        assert set(sample["metric"]) - {"__name__"} == labels, (what, sample["metric"])
        value = float(sample["value"][1])
        assert not math.isinf(value), (what, sample)
