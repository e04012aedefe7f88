"""The exchange's refusals (issue 13 item 5) against the simulator, with the real worker, Kafka and registry.

- HTTP 451 on the WebSocket handshake (``handshake`` fault): one clear ERROR line, /readyz 503 naming 451,
  attempts spaced by --location-refused-retry-s (shortened here; the default of 300 s is proven in
  tests/unit/test_limits.py), and the worker recovers once the simulator accepts again.
- HTTP 451 on REST at start (``rest`` fault on exchangeInfo): the worker stays up, not ready, names 451, asks
  again only after the retry interval, then starts.
- The connection-attempt budget under a flapping server (every handshake refused with 403, which only asks for
  the slow backoff of 0.15-0.3 s here): the attempts the simulator counts never exceed the budget in any
  window, the worker waits instead (budget waits counted), and it connects when the refusals end.

Attempts are counted at the simulator (``handshake_attempts`` in /_sim/stats), sampled every ~0.1 s.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def attempts(sim: Any) -> int:
    return int(sim.stats()["handshake_attempts"].get("total", 0))


def refusal_lines(worker: Any) -> list[dict[str, Any]]:
    return [e for e in worker.log_events() if "refuses this location" in str(e.get("event", ""))]


def sample_until_ready(sim: Any, worker: Any, timeout_s: float) -> list[tuple[float, int, int, str]]:
    """(monotonic time, attempts at the simulator, /readyz status, /readyz body) until ready or timeout."""
    samples = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        worker.check_alive()
        try:
            status, body = worker.get("/readyz")
        except OSError:  # the metrics server is not up yet
            status, body = 0, ""
        samples.append((time.monotonic(), attempts(sim), status, body))
        if status == 200:
            return samples
        time.sleep(0.1)
    raise AssertionError(f"worker not ready in {timeout_s}s; log tail:\n{worker.log_tail()}")


def first_seen(samples: list[tuple[float, int, int, str]]) -> list[float]:
    """When each new attempt was first seen at the simulator (one entry per attempt)."""
    seen, last = [], 0
    for t, count, _, _ in samples:
        seen.extend([t] * (count - last))
        last = max(last, count)
    return seen


def test_handshake_451_is_one_clear_line_a_readiness_reason_and_a_slow_retry(sim_factory, worker_factory,
                                                                            unique_prefix):
    """Catches: 451 retried with the ordinary backoff (0.2-1 s here: many attempts within the retry interval),
    an error line per attempt, a /readyz that does not name 451, and a worker that stays refused afterwards."""
    retry_s, refusals = 8.0, 2
    sim = sim_factory(symbols=6, interval=0.5, seed=5)
    sim.fault("handshake", status=451, count=refusals)
    worker = worker_factory("--streams", "!miniTicker@arr", "--ws-url", sim.ws_url, "--rest-url", sim.http_url,
                            "--topic-prefix", unique_prefix, "--backoff-initial-s", "0.2", "--backoff-max-s", "1",
                            "--location-refused-retry-s", str(retry_s))
    samples = sample_until_ready(sim, worker, timeout_s=refusals * retry_s * 1.1 + 40)
    seen = first_seen(samples)
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    refused_bodies = [body for _, _, status, body in samples if status == 503 and "451" in body]

    assert len(seen) == refusals + 1, f"{len(seen)} attempts for {refusals} refusals"
    assert all(gap >= retry_s - 0.5 for gap in gaps), f"451 retried sooner than every {retry_s} s: {gaps}"
    assert refused_bodies, "/readyz never named the 451 while refused"
    assert "refuses this location" in refused_bodies[-1] and "websocket" in refused_bodies[-1]
    lines = refusal_lines(worker)
    assert len(lines) == 1, f"{len(lines)} refusal lines for {refusals} refusals"
    assert lines[0]["level"] == "ERROR" and "use a host in an allowed region" in lines[0]["event"]
    assert "restricted location" in lines[0]["event"], "Binance's own words did not reach the operator"
    assert worker.metric("binance_ingest_ws_reconnects_total", reason="http_451") == refusals
    assert worker.metric("binance_ingest_location_refused", source="websocket") == 0
    worker.wait_for(lambda: worker.metric("binance_ingest_records_produced_total") > 0, 15, "records after recovery")
    assert sim.stats()["handshakes_refused"].get("451") == refusals
    assert worker.stop() == 0
    print(f"\n[451 websocket] attempts at the simulator {len(seen)}, gaps {[round(g, 2) for g in gaps]} s "
          f"(retry every {retry_s} s), refusal lines 1, /readyz 503 samples naming 451: {len(refused_bodies)}")


def test_rest_451_at_start_waits_slowly_instead_of_exiting(sim_factory, worker_factory, unique_prefix):
    """Catches: a worker that exits on the 451 (a crash loop retries as fast as the pod restarts), a retry
    before the interval, and a /readyz that does not say why."""
    retry_s = 5.0
    sim = sim_factory(symbols=6, interval=0.5, seed=6)
    sim.fault("rest", status=451, count=1)
    started = time.monotonic()
    worker = worker_factory("--streams", "!miniTicker@arr", "--ws-url", sim.ws_url, "--rest-url", sim.http_url,
                            "--topic-prefix", unique_prefix, "--location-refused-retry-s", str(retry_s))
    worker.wait_for(lambda: bool(refusal_lines(worker)), 40, "the refusal line")
    refused_at = time.monotonic()
    status, body = worker.get("/readyz")
    assert status == 503 and "451" in body and "rest" in body, body
    assert sim.stats()["rest_requests"].get("/api/v3/exchangeInfo", 0) == 1
    worker.wait_ready(timeout_s=retry_s * 1.1 + 30)
    ready_after = time.monotonic() - refused_at
    assert ready_after >= retry_s * 0.9, f"exchangeInfo asked again after {ready_after:.1f} s, not {retry_s} s"
    assert sim.stats()["rest_requests"].get("/api/v3/exchangeInfo", 0) == 2
    lines = refusal_lines(worker)
    assert len(lines) == 1 and lines[0]["level"] == "ERROR" and "REST /api/v3/exchangeInfo" in lines[0]["event"]
    assert worker.metric("binance_ingest_location_refused", source="rest") == 0
    assert worker.stop() == 0
    print(f"\n[451 rest] ready {ready_after:.1f} s after the refusal (retry every {retry_s} s), "
          f"{time.monotonic() - started:.1f} s after start, exchangeInfo requests 2, refusal lines 1")


def test_attempt_budget_holds_under_a_flapping_handshake(sim_factory, worker_factory, unique_prefix):
    """Catches: a worker without the budget (12 refusals at 0.15-0.3 s apart would put all 12 attempts into one
    window), and a budget that gives up instead of waiting (the worker would not connect at the end)."""
    budget, window_s, refusals = 5, 6.0, 12
    sim = sim_factory(symbols=6, interval=0.5, seed=7)
    sim.fault("handshake", status=403, count=refusals)
    worker = worker_factory("--streams", "!miniTicker@arr", "--ws-url", sim.ws_url, "--rest-url", sim.http_url,
                            "--topic-prefix", unique_prefix, "--backoff-initial-s", "0.1", "--backoff-max-s", "0.2",
                            "--backoff-slow-s", "0.3", "--max-connection-attempts", str(budget),
                            "--connection-attempt-window-s", str(window_s))
    samples = sample_until_ready(sim, worker, timeout_s=(refusals // budget + 1) * window_s + 40)
    # Attempts between two samples less than a window apart (minus a margin for the sampling's own HTTP
    # round trip) all fall inside one window: never more than the budget.
    margin = 0.3
    worst = max((c2 - c1, round(t2 - t1, 2)) for i, (t1, c1, _, _) in enumerate(samples)
                for t2, c2, _, _ in samples[i + 1:] if t2 - t1 <= window_s - margin)
    total = samples[-1][1]
    assert total == refusals + 1, f"{total} attempts for {refusals} refusals"
    assert worst[0] <= budget, f"{worst[0]} attempts within {worst[1]} s, budget {budget} per {window_s} s"
    waits = worker.metric("binance_ingest_ws_connect_budget_waits_total")
    assert waits >= refusals // budget, f"only {waits} budget waits"
    assert worker.metric("binance_ingest_ws_connect_attempts_total") == total
    assert worker.metric("binance_ingest_ws_reconnects_total", reason="http_403") == refusals
    assert any("connection-attempt budget spent" in str(e.get("event")) for e in worker.log_events())
    assert worker.stop() == 0
    print(f"\n[attempt budget] {total} attempts at the simulator in {samples[-1][0] - samples[0][0]:.1f} s, most in "
          f"any window {worst[0]} (budget {budget} per {window_s} s), budget waits {waits:g}")
