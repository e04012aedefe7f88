"""Kafka unreachable for ~20 s: a handful of structured log lines, not hundreds of raw librdkafka lines.

librdkafka retries a dead broker every few hundred milliseconds and logs each attempt; before its lines went
through our logger (``logger=`` on every client) and the rate limit (ingest/logs.py), a 25 s outage printed
584 raw lines that ignored ``--log-format json``.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from ingest.sim.settings import DEFAULT_EXCHANGE_INFO

pytestmark = [pytest.mark.integration, pytest.mark.faults]

OUTAGE_S = 20.0
MAX_LINES = 30
"""A handful: one line per distinct error per interval, a few distinct errors, plus the worker's own events."""


def test_kafka_outage_logs_a_handful_of_json_lines(local_stack_factory, sim_factory, worker_factory):
    stack = local_stack_factory()
    sim = sim_factory(exchange_info=DEFAULT_EXCHANGE_INFO, symbols=5, interval=0.5, seed=7)
    worker = worker_factory("--streams", "!miniTicker@arr", "--ws-url", sim.ws_url, "--rest-url", sim.http_url,
                            "--topic-prefix", "logvolume", bootstrap=stack.bootstrap_servers,
                            registry=stack.registry_url)
    worker.wait_ready()
    before = len(worker.log_path.read_text().splitlines())

    stack.stop_kafka(signal.SIGKILL)
    worker.wait_for(lambda: worker.get("/readyz")[0] == 503, 30, "readiness 503 while Kafka is down")
    time.sleep(OUTAGE_S)
    worker.check_alive()
    worker._log.flush()
    during = worker.log_path.read_text().splitlines()[before:]

    assert during, "the outage was not logged at all"
    events = [json.loads(line) for line in during]  # every line is JSON: librdkafka's too (--log-format json)
    assert len(during) <= MAX_LINES, f"{len(during)} lines in {OUTAGE_S:.0f} s:\n" + "\n".join(during[:60])
    kafka_lines = [e for e in events if e["logger"] in ("ingest.kafka.librdkafka", "ingest.kafka.producer")]
    assert kafka_lines, "the broker outage is not named in the log"
