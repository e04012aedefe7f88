"""docs/metrics.md, generated from the metric catalogue of :mod:`ingest.metrics`."""

from __future__ import annotations

from ingest import metrics

HEADER = """# Metrics

Generated from `ingest/metrics.py` by `python -m ingest.observability`; do not edit by hand (a test fails when this
file is stale). Every metric has the prefix `binance_ingest_`. Labels are bounded: reasons, streams, topics, status
codes and brokers come from small sets, never from symbols. A Kubernetes scrape adds `namespace` and `pod`, which
the dashboard and the alerts use.

The worker serves them at `http://HOST:9108/metrics` (`--metrics-port`), next to `/healthz` (200 while the process
lives) and `/readyz` (200 when connected to Binance and producing to Kafka, else 503 with a JSON body listing the
reasons). Metrics whose name starts with `binance_ingest_kafka_` come from librdkafka's statistics
(`statistics.interval.ms`) and appear after the producer's first statistics callback.

![Tickers/s, event lag p50/p99 and reconnects of a test run](img/panels.png)

*The main dashboard panels during `tests/observability/test_prometheus_live.py`: healthy, a storm of 1011 closes,
malformed frames, frames delayed at the exchange (lag rises to ~10 s), then the exchange goes away. Rendered by
`python -m ingest.observability.panels_png` from the run's Prometheus data.*

Histograms are exposed as `NAME_bucket` (with label `le`), `NAME_sum` and `NAME_count`; counters have no
`_created` series. Next to these, `/metrics` carries the standard `process_*` metrics of prometheus_client's process
collector (`process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`, ...).
Buckets: `event_lag_seconds` {lag}; `produce_latency_seconds` {produce}.

| metric | type | labels | meaning |
|---|---|---|---|
"""


def render() -> str:
    def buckets(values: tuple[float, ...]) -> str:
        return ", ".join(f"{v:g}" for v in values) + " s"

    text = HEADER.replace("{lag}", buckets(metrics.LAG_BUCKETS)).replace("{produce}",
                                                                         buckets(metrics.PRODUCE_BUCKETS))
    for m in metrics.catalogue():
        labels = ", ".join(f"`{label}`" for label in m.labels) or "none"
        doc = m.doc.replace("|", "\\|")
        text += f"| `{m.name}` | {m.kind} | {labels} | {doc} |\n"
    return text
