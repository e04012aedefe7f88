"""Kafka unreachable when the worker starts: it waits with backoff and a clear log line, then runs.

Catches: treating a transport error of the admin client as fatal at start (the process would exit, and in
Kubernetes crash-loop, instead of waiting for the brokers).
"""

from __future__ import annotations

import signal
import time

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def test_worker_waits_for_kafka_at_start(local_stack_factory, sim_factory, worker_factory):
    stack = local_stack_factory()
    stack.stop_kafka(signal.SIGKILL)
    sim = sim_factory(symbols=5, interval=0.25, seed=11)
    worker = worker_factory("--streams", "!miniTicker@arr", "--ws-url", sim.ws_url, "--rest-url", sim.http_url,
                            "--topic-prefix", "downatstart.spot", "--backoff-initial-s", "0.5",
                            "--backoff-max-s", "2", bootstrap=stack.bootstrap_servers, registry=stack.registry_url)
    worker.wait_for(lambda: any("topic seeding failed" in str(e.get("event")) for e in worker.log_events()), 90,
                    "the retry log line")
    time.sleep(2.0)
    worker.check_alive()
    status, body = worker.get("/readyz")
    assert status == 503 and "kafka" in body

    started = time.monotonic()
    stack.start_kafka()
    stack.wait_kafka_ready(time.monotonic() + 60)
    worker.wait_ready(timeout_s=120)
    worker.wait_for(lambda: worker.metric("binance_ingest_records_produced_total", topic="downatstart.spot.miniticker")
                    > 0, 30, "records in Kafka")
    print(f"kafka down at start: ready {time.monotonic() - started:.1f}s after the broker started")
    assert worker.stop() == 0


def test_sigterm_while_waiting_for_kafka_exits_promptly(local_stack_factory, sim_factory, worker_factory):
    """Catches: start-up waits that ignore SIGTERM (a pod stuck in Terminating until SIGKILL)."""
    stack = local_stack_factory()
    stack.stop_kafka(signal.SIGKILL)
    sim = sim_factory(symbols=3, interval=0.5, seed=12)
    worker = worker_factory("--streams", "!miniTicker@arr", "--ws-url", sim.ws_url, "--rest-url", sim.http_url,
                            "--topic-prefix", "sigterm.spot", "--backoff-initial-s", "0.5", "--backoff-max-s", "2",
                            bootstrap=stack.bootstrap_servers, registry=stack.registry_url)
    worker.wait_for(lambda: _alive(worker), 60, "the metrics server")
    time.sleep(3.0)
    started = time.monotonic()
    assert worker.stop(signal.SIGTERM, timeout_s=30) == 0
    took = time.monotonic() - started
    print(f"SIGTERM while waiting for Kafka: exited 0 in {took:.1f}s")
    assert took < 15


def _alive(worker) -> bool:
    try:
        return worker.get("/healthz")[0] == 200
    except OSError:
        return False
