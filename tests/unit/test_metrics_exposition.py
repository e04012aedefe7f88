"""What /metrics exposes beyond our own catalogue: process_* from the process collector, no _created series."""

from __future__ import annotations

from prometheus_client import generate_latest

from ingest import metrics


def test_metrics_have_process_collector_and_no_created_series():
    metrics.RECORDS_PRODUCED.labels("t").inc()  # a counter with a child, which would carry a _created sample
    text = generate_latest(metrics.REGISTRY).decode()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    assert "binance_ingest_records_produced_total" in names
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"} <= names
    assert not [n for n in names if n.endswith("_created")]
