"""ingest.metrics: the DESIGN §8 contract, librdkafka statistics as metrics, and the HTTP endpoints."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import socket
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

import ingest
from ingest import metrics

# DESIGN.md §8, verbatim: the names the dashboard, the alerts and users rely on.
DESIGN_NAMES = [
    "ws_connected", "ws_reconnects_total", "ws_messages_total", "records_produced_total", "records_dropped_total",
    "deadletter_total", "duplicates_suppressed_total", "event_lag_seconds", "produce_latency_seconds",
    "producer_queue_messages", "last_event_timestamp_seconds", "symbols_known", "symbols_listed_total",
    "symbols_delisted_total", "rest_requests_total", "rest_weight_used", "shards_owned", "build_info",
]
DESIGN_LABELS = {"ws_reconnects_total": ("reason",), "ws_messages_total": ("stream",),
                 "records_produced_total": ("topic",), "records_dropped_total": ("reason",),
                 "deadletter_total": ("reason",), "last_event_timestamp_seconds": ("stream",),
                 "rest_requests_total": ("endpoint", "status")}


def scrape() -> dict[str, list]:
    """Samples of the registry by sample name, parsed back from the text exposition format."""
    from prometheus_client import generate_latest

    out: dict[str, list] = {}
    for family in text_string_to_metric_families(generate_latest(metrics.REGISTRY).decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def test_every_design_metric_is_defined_with_its_labels() -> None:
    by_name = {m.name: m for m in metrics.catalogue()}
    for short in DESIGN_NAMES:
        assert metrics.PREFIX + short in by_name, short
    for short, labels in DESIGN_LABELS.items():
        assert set(labels) <= set(by_name[metrics.PREFIX + short].labels), short


def test_labels_are_bounded_and_names_unique() -> None:
    names = [m.name for m in metrics.catalogue()]
    assert len(names) == len(set(names))
    for m in metrics.catalogue():
        assert m.name.startswith(metrics.PREFIX)
        assert not {"symbol", "symbols", "pair"} & set(m.labels), f"{m.name} has a per-symbol label"
        assert m.doc.strip(), m.name


def test_lag_buckets_span_milliseconds_to_minutes() -> None:
    assert metrics.LAG_BUCKETS[0] <= 0.01
    assert metrics.LAG_BUCKETS[-1] >= 300
    assert list(metrics.LAG_BUCKETS) == sorted(metrics.LAG_BUCKETS)


def test_build_info_carries_the_package_version() -> None:
    metrics.set_build_info()
    (sample,) = scrape()["binance_ingest_build_info"]
    assert sample.labels["version"] == ingest.__version__
    assert sample.value == 1.0


@pytest.fixture
def real_stats() -> Iterator[dict]:
    """A statistics document from a real librdkafka producer that cannot reach its (closed) bootstrap port."""
    docs: list[str] = []
    producer = Producer({"bootstrap.servers": "127.0.0.1:9", "statistics.interval.ms": 100, "stats_cb": docs.append,
                         "logger": logging.getLogger("test.librdkafka"), "log_level": 0})
    producer.produce("t", b"x")
    deadline = time.monotonic() + 10
    while not docs and time.monotonic() < deadline:
        producer.poll(0.05)
    producer.purge()
    producer.flush(1)
    assert docs, "librdkafka produced no statistics"
    yield json.loads(docs[-1])
    metrics.LIBRDKAFKA_STATS.reset()


def test_librdkafka_stats_from_a_real_client(real_stats: dict) -> None:
    metrics.LIBRDKAFKA_STATS.reset()
    metrics.observe_librdkafka_stats(json.dumps(real_stats))
    samples = scrape()
    (queued,) = samples["binance_ingest_kafka_producer_queue_messages"]
    assert queued.value == real_stats["msg_cnt"] == 1
    (cap,) = samples["binance_ingest_kafka_producer_queue_max_messages"]
    assert cap.value == real_stats["msg_max"]
    (up,) = samples["binance_ingest_kafka_broker_up"]
    assert up.labels == {"broker": "127.0.0.1:9/bootstrap"} and up.value == 0.0
    assert "binance_ingest_kafka_broker_rtt_seconds" not in samples  # no request yet: no fake 0 s round trip
    assert samples["binance_ingest_kafka_broker_tx_errors_total"][0].value >= 0
    assert abs(samples["binance_ingest_kafka_stats_timestamp_seconds"][0].value - time.time()) < 60


def test_librdkafka_rtt_in_seconds_and_brokers_follow_the_newest_snapshot(real_stats: dict) -> None:
    stats = copy.deepcopy(real_stats)
    (template,) = stats["brokers"].values()
    brokers = {}
    for node in (1, 2):
        b = copy.deepcopy(template)
        b.update(name=f"kafka-{node}:9092/{node}", nodeid=node, source="learned", state="UP", txerrs=3 * node,
                 txretries=node, disconnects=0)
        b["rtt"].update(cnt=10, avg=2500, p50=2000, p99=12000)
        brokers[b["name"]] = b
    brokers[":0/internal"] = dict(copy.deepcopy(template), name=":0/internal", source="internal", state="UP")
    stats["brokers"] = brokers
    metrics.observe_librdkafka_stats(json.dumps(stats))
    samples = scrape()
    rtt = {(s.labels["broker"], s.labels["stat"]): s.value for s in samples["binance_ingest_kafka_broker_rtt_seconds"]}
    assert rtt == {(f"kafka-{n}:9092/{n}", stat): value for n in (1, 2)
                   for stat, value in (("avg", 0.0025), ("p50", 0.002), ("p99", 0.012))}
    errors = {s.labels["broker"]: s.value for s in samples["binance_ingest_kafka_broker_tx_errors_total"]}
    assert errors == {"kafka-1:9092/1": 3.0, "kafka-2:9092/2": 6.0}  # the internal pseudo-broker is left out

    for broker in stats["brokers"].values():  # a quiet window: no request, librdkafka reports rtt 0
        broker["rtt"].update(cnt=0, avg=0, p50=0, p99=0)
    metrics.observe_librdkafka_stats(json.dumps(stats))
    samples = scrape()["binance_ingest_kafka_broker_rtt_seconds"]
    held = {(s.labels["broker"], s.labels["stat"]): s.value for s in samples}
    assert held == rtt  # the last measured round trip, not a fake 0

    del stats["brokers"]["kafka-2:9092/2"]
    metrics.observe_librdkafka_stats(json.dumps(stats))
    assert {s.labels["broker"] for s in scrape()["binance_ingest_kafka_broker_up"]} == {"kafka-1:9092/1"}
    assert {s.labels["broker"] for s in scrape()["binance_ingest_kafka_broker_rtt_seconds"]} == {"kafka-1:9092/1"}


@pytest.mark.parametrize("bad", ["{not json", "[1, 2]", ""])
def test_malformed_librdkafka_stats_are_ignored(bad: str, caplog: pytest.LogCaptureFixture) -> None:
    metrics.LIBRDKAFKA_STATS.reset()
    metrics.observe_librdkafka_stats(bad)
    assert "binance_ingest_kafka_producer_queue_messages" not in scrape()
    assert "ignoring" in caplog.text


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


class Switch:
    """A readiness callable the test flips, standing in for the worker's view of Binance and Kafka."""

    def __init__(self) -> None:
        self.ready = False
        self.fail = False

    def __call__(self) -> tuple[bool, dict]:
        if self.fail:
            raise RuntimeError("boom")
        if self.ready:
            return True, {"reasons": []}
        return False, {"reasons": ["kafka: no broker reachable"]}


@pytest.fixture
def served() -> Iterator[tuple[str, Switch]]:
    switch = Switch()
    server = metrics.MetricsServer("127.0.0.1", 0, switch)
    port = server.start()
    assert port > 0
    yield f"http://127.0.0.1:{port}", switch
    server.stop()
    server.stop()  # idempotent


def test_metrics_healthz_and_404(served: tuple[str, Switch]) -> None:
    base, _ = served
    metrics.WS_RECONNECTS.labels(reason="1011").inc()
    status, ctype, body = get(base + "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    assert 'binance_ingest_ws_reconnects_total{reason="1011"}' in body
    assert get(base + "/healthz")[:1] == (200,) and get(base + "/healthz")[2] == "ok\n"
    assert get(base + "/nope")[0] == 404


def test_readyz_follows_the_readiness_callable(served: tuple[str, Switch]) -> None:
    base, switch = served
    status, ctype, body = get(base + "/readyz")
    assert (status, ctype) == (503, "application/json")
    assert json.loads(body) == {"ready": False, "reasons": ["kafka: no broker reachable"]}
    assert "binance_ingest_ready 0.0" in get(base + "/metrics")[2]

    switch.ready = True
    status, _, body = get(base + "/readyz")
    assert status == 200 and json.loads(body)["ready"] is True
    assert "binance_ingest_ready 1.0" in get(base + "/metrics")[2]

    switch.fail = True
    status, _, body = get(base + "/readyz")
    assert status == 503 and "boom" in json.loads(body)["reasons"][0]
    assert get(base + "/healthz")[0] == 200  # liveness never depends on readiness


def test_openmetrics_is_served_when_asked(served: tuple[str, Switch]) -> None:
    base, _ = served
    req = urllib.request.Request(base + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        assert resp.read().decode().rstrip().endswith("# EOF")


def test_stop_releases_the_port() -> None:
    server = metrics.MetricsServer("127.0.0.1", 0, lambda: (True, {}))
    port = server.start()
    server.stop()
    again = metrics.MetricsServer("127.0.0.1", port, lambda: (True, {}))
    assert again.start() == port
    again.stop()


def test_runtime_gauges_count_tasks_and_live_connection_objects():
    """Catches a soak that could not see a leak: ws_connection_objects must follow objects that are alive
    (and drop when they are collected), asyncio_tasks the loop's tasks, symbol_state_entries the callable."""
    import gc

    from ingest import metrics as m

    class Conn:  # any object: the gauge holds weak references only
        pass

    gc.collect()  # connection objects of earlier tests that only wait for the cyclic GC must not be in the base
    base = _gauge(m.WS_CONNECTION_OBJECTS)
    kept = [Conn() for _ in range(3)]
    for conn in kept:
        m.track_connection(conn)
    assert _gauge(m.WS_CONNECTION_OBJECTS) == base + 3
    del kept, conn
    gc.collect()
    assert _gauge(m.WS_CONNECTION_OBJECTS) == base

    async def main() -> tuple[float, float]:
        m.watch_runtime(asyncio.get_running_loop(), lambda: 42)
        sleepers = [asyncio.create_task(asyncio.sleep(10)) for _ in range(4)]
        await asyncio.sleep(0)
        counted = _gauge(m.ASYNCIO_TASKS)
        for task in sleepers:
            task.cancel()
        await asyncio.gather(*sleepers, return_exceptions=True)
        return counted, _gauge(m.SYMBOL_STATE)

    tasks, state = asyncio.run(main())
    assert tasks == 5  # main + 4 sleepers
    assert state == 42


def _gauge(gauge) -> float:
    return next(iter(gauge.collect())).samples[0].value


def test_a_client_that_resets_the_connection_prints_no_traceback(
        served: tuple[str, Switch], capsys: pytest.CaptureFixture[str]) -> None:
    """``curl -f`` on a 503 from /readyz hangs up without reading the body: the reset must not reach stderr."""
    base, _ = served
    port = int(base.rsplit(":", 1)[1])
    for request in (b"", b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
        if request:
            sock.sendall(request)
            time.sleep(0.2)  # the answer sits unread in our buffer, as with curl -f
        sock.close()
    time.sleep(0.5)
    assert get(base + "/healthz")[0] == 200  # still serving
    assert "Traceback" not in capsys.readouterr().err
