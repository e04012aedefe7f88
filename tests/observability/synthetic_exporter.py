"""A process that exposes ingest.metrics as a healthy worker would, then as a faulty one, on command.

Used by test_prometheus_queries.py to evaluate every dashboard query and alert expression against a real Prometheus
without needing Binance, Kafka or the worker: the metric objects are the real ones from ingest.metrics, only the
events are driven by this script. It prints its port, then reads lines from stdin: ``fault`` switches to the faulty
state; end of input stops it (so it dies with the test).
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time

from ingest import metrics

TOPIC = "binance.spot.miniticker"
STREAM = "!miniTicker@arr"


class State:
    faulty = False


def stats(faulty: bool) -> str:
    """The fields of a librdkafka statistics document that ingest.metrics reads."""
    broker = {"name": "127.0.0.1:9092/1", "nodeid": 1, "source": "learned", "state": "INIT" if faulty else "UP",
              "outbuf_msg_cnt": 0, "waitresp_msg_cnt": 3, "txerrs": 2 if faulty else 0, "txretries": 1,
              "req_timeouts": 0, "disconnects": 0,
              "rtt": {"cnt": 10, "avg": 1800, "p50": 1500, "p99": 9000}}
    return json.dumps({"msg_cnt": 40, "msg_size": 4000, "msg_max": 100000, "msg_size_max": 1 << 30,
                       "brokers": {broker["name"]: broker}})


def tick(state: State, rng: random.Random) -> None:
    m = metrics
    m.SHARDS_OWNED.set(1)
    m.COORDINATION_SHARDS.set(2 if state.faulty else 1)  # faulty: the other replica died, its shard is unowned
    m.WS_SUBSCRIPTIONS.set(1)
    m.REST_WEIGHT_LIMIT.set(6000)
    m.PRODUCER_QUEUE.set(rng.randint(0, 50))
    m.observe_librdkafka_stats(stats(state.faulty))
    if state.faulty:
        m.WS_CONNECTED.set(0)
        m.REST_WEIGHT_USED.set(5500)
        m.LOCATION_REFUSED.labels("websocket").set(1)  # HTTP 451 on the handshake
        for _ in range(50):
            m.EVENT_LAG.labels(TOPIC).observe(rng.uniform(8, 12))
        return
    m.WS_CONNECTED.set(1)
    m.REST_WEIGHT_USED.set(40)
    m.LOCATION_REFUSED.labels("websocket").set(0)
    m.WS_MESSAGES.labels(STREAM).inc()
    m.RECORDS_ACCEPTED.labels(TOPIC, "websocket").inc(20)
    m.RECORDS_PRODUCED.labels(TOPIC).inc(20)
    m.DUPLICATES_SUPPRESSED.inc(rng.randint(0, 2))
    m.LAST_EVENT.labels(STREAM).set(time.time() - 0.2)
    for _ in range(20):
        m.EVENT_LAG.labels(TOPIC).observe(rng.uniform(0.02, 0.4))
        m.PRODUCE_LATENCY.observe(rng.uniform(0.001, 0.02))


def start_faults() -> None:
    """What a disconnect, a full buffer, malformed frames, a 1011 storm and a Kafka outage leave behind."""
    m = metrics
    m.LAST_EVENT.labels(STREAM).set(time.time() - 300)
    m.WS_RECONNECTS.labels("1011").inc(6)
    m.RECORDS_DROPPED.labels("buffer_full").inc(5)
    m.DEADLETTER.labels("malformed_json").inc(20)
    m.PRODUCER_ERRORS.labels("_MSG_TIMED_OUT").inc(3)
    m.REST_REQUESTS.labels("ticker/24hr", "429").inc()


def main() -> int:
    metrics.set_build_info()
    metrics.SYMBOLS_KNOWN.labels("TRADING").set(3)
    metrics.SYMBOLS_KNOWN.labels("BREAK").set(1)
    metrics.SYMBOLS_LISTED.inc(4)
    metrics.REST_REQUESTS.labels("exchangeInfo", "200").inc()
    state = State()
    server = metrics.MetricsServer("127.0.0.1", 0, lambda: (not state.faulty, {"reasons": []}))
    print(server.start(), flush=True)
    stop = threading.Event()

    def loop() -> None:
        rng = random.Random(7)
        while not stop.is_set():
            tick(state, rng)
            stop.wait(0.2)

    threading.Thread(target=loop, daemon=True).start()
    for line in sys.stdin:
        if line.strip() == "fault":
            start_faults()
            state.faulty = True
    stop.set()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
