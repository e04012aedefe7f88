"""Schema Registry outages against a real Apicurio Registry that the test stops and starts (issue item 5).

A private stack per module (its registry stores schemas in an H2 *file*, like a production registry keeps
them in its database, so ids survive a restart and the test can still decode what was written). The worker
registers its schemas once at start and frames every record with the ids it got; the registry is not on the
record path afterwards.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.devstack.stack import LocalStack
from tests.faults import accounting
from tests.kafka_reading import read_all
from tests.worker_fixture import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.faults]

BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 2.0
REGISTERED = re.compile(r"schema for (\w+) registered under (\S+) with id (\d+)")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    state_dir = tmp_path_factory.mktemp("registry-outage-stack")
    (state_dir / "registry-jvm.options").write_text(
        f"-Dapicurio.datasource.url=jdbc:h2:file:{state_dir / 'registry-db'}\n")
    local = LocalStack(state_dir)
    try:
        local.up()
        yield local
    finally:
        local.down()


def start_worker(stack: LocalStack, sim, prefix: str, log_dir: Path) -> WorkerProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update(KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap_servers, SCHEMA_REGISTRY_URL=stack.registry_url)
    return WorkerProcess(["--streams", "!miniTicker@arr", "--ws-url", sim.ws_url, "--rest-url", sim.http_url,
                          "--topic-prefix", prefix, "--backoff-initial-s", str(BACKOFF_INITIAL_S),
                          "--backoff-max-s", str(BACKOFF_MAX_S)], env, log_dir / f"worker-{time.monotonic_ns()}.log")


def registration_failures(worker: WorkerProcess) -> list[dict]:
    return [e for e in worker.log_events() if str(e.get("event", "")).startswith("schema registration failed")]


def registered_ids(worker: WorkerProcess) -> dict[str, int]:
    ids = {}
    for event in worker.log_events():
        match = REGISTERED.search(str(event.get("event", "")))
        if match:
            ids[match.group(1)] = int(match.group(3))
    return ids


def ensure_registry(stack: LocalStack) -> None:
    if not stack.registry_running():
        stack.start_registry()
        stack.wait_registry_ready(time.monotonic() + 120)


def test_registry_down_mid_run_keeps_producing_with_known_ids(stack, sim_factory, tmp_path, unique_prefix):
    """Registry stopped while the worker runs: records keep arriving in Kafka, framed with the ids registered at
    start, and the worker stays ready. Catches: any per-record or periodic registry lookup on the produce path
    (serializer with auto-registration, id cache expiry), readiness tied to the registry."""
    ensure_registry(stack)
    sim = sim_factory(symbols=8, interval=0.25, seed=31)
    worker = start_worker(stack, sim, unique_prefix, tmp_path)
    worker.wait_ready(60)
    ids = registered_ids(worker)
    assert set(ids) == {"miniticker", "ticker", "symbols"}
    time.sleep(1.0)

    stack.stop_registry()
    stopped_at_ms = int(time.time() * 1000)
    produced_at_stop = worker.metric("binance_ingest_records_produced_total")
    time.sleep(4.0)
    assert worker.get("/readyz")[0] == 200, "readiness must not depend on the registry after start"
    produced_during = worker.metric("binance_ingest_records_produced_total") - produced_at_stop
    assert produced_during > 0, "nothing produced while the registry was down"
    final, state = accounting.quiesce(sim, worker)
    assert worker.stop() == 0

    topic = f"{unique_prefix}.miniticker"
    records = read_all(stack.bootstrap_servers, topic)
    framed_ids = {int.from_bytes(r.raw[1:5], "big") for r in records}
    after_stop = [r for r in records if r.timestamp_ms > stopped_at_ms]
    assert after_stop, "no record with an event time after the registry stopped"
    assert framed_ids == {ids["miniticker"]}, f"records framed with {framed_ids}, registered {ids}"

    ensure_registry(stack)  # only to decode for the accounting check; ids persisted in the registry's database
    figures = accounting.check(sim, final, stack.bootstrap_servers, stack.registry_url, unique_prefix,
                               snapshot_entries=state.snapshot_entries)
    print(f"registry down for the last {len(after_stop)} records; produced while down {produced_during:g}; "
          + figures.line())


def test_registry_down_at_start_waits_then_produces(stack, sim_factory, tmp_path, unique_prefix):
    """Registry down when the worker starts: it stays up (healthz 200, readyz 503) and retries schema
    registration with capped backoff and one clear log line per attempt; once the registry is back it becomes
    ready and produces everything the simulator sent. Catches: a crash (exit) on the first registry error, a
    retry without backoff/cap (attempt count and logged delays are checked), readiness reported too early."""
    stack.stop_registry()
    sim = sim_factory(symbols=8, interval=0.25, seed=32)
    worker_started = time.monotonic()
    worker = start_worker(stack, sim, unique_prefix, tmp_path)
    worker.wait_for(lambda: len(registration_failures(worker)) >= 4, 30, "four logged registration attempts")
    assert worker.get("/healthz")[0] == 200
    assert worker.get("/readyz")[0] == 503
    assert sim.stats()["connections_total"] == 0, "no stream may be opened before the schemas are registered"

    started = time.monotonic()
    stack.start_registry()
    stack.wait_registry_ready(time.monotonic() + 120)
    registry_up = time.monotonic()
    worker.wait_ready(60)
    ready = time.monotonic()
    failures = registration_failures(worker)
    delays = [float(m.group(1)) for e in failures if (m := re.search(r"retrying in ([\d.]+) s", e["event"]))]
    assert delays and max(delays) <= BACKOFF_MAX_S + 0.05, delays
    assert all("Error" in e["event"] or "error" in e["event"] for e in failures), failures[:1]
    assert all(e["level"] == "WARNING" for e in failures)
    attempts_while_down = len(failures)
    # With a 2 s cap (full jitter: 1 s on average) the registry is asked about once a second, not in a tight loop.
    assert attempts_while_down <= 5 + (registry_up - worker_started) / 0.2, f"{attempts_while_down} attempts"

    time.sleep(2.0)
    final, state = accounting.quiesce(sim, worker)
    assert worker.stop() == 0
    figures = accounting.check(sim, final, stack.bootstrap_servers, stack.registry_url, unique_prefix,
                               snapshot_entries=state.snapshot_entries)
    print(f"registry start took {registry_up - started:.1f}s; worker ready {ready - registry_up:.1f}s after the "
          f"registry answered; {attempts_while_down} logged attempts, delays {min(delays):.2f}-{max(delays):.2f}s; "
          + figures.line())
