"""Stale watchdog (issue item 2): a connection that stops delivering is noticed and replaced.

Two ways a connection goes stale, both from the simulator's faults:
* ``slow``: frames trickle (one every 3 s) while the socket stays healthy and pings are answered; only the
  frame deadline (``--stale-timeout-s``) can notice this.
* ``silence``: no frames, no pings, no pongs (a dead peer behind a NAT); with the automatic, stream-aware
  deadline (5 push intervals of the slowest stream, at least 10 s: 10 s for ``!miniTicker@arr``).
Each ends in a reconnect counted as ``ws_reconnects_total{reason="stale"}``, a new connection delivering,
and the accounting identity (the cut connection's tail may be lost in flight; the REST snapshot restores
the state).
"""

from __future__ import annotations

import time

import pytest

from tests.faults import accounting

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def start(sim_factory, worker_factory, prefix: str, *extra: str):
    sim = sim_factory(symbols=5, interval=0.2, seed=13)
    worker = worker_factory("--streams", "!miniTicker@arr", "--ws-url", sim.ws_url, "--rest-url", sim.http_url,
                            "--topic-prefix", prefix, "--backoff-initial-s", "0.3", "--combined", "false", *extra)
    worker.wait_ready()
    time.sleep(1.0)
    return sim, worker


def wait_stale_and_recovery(sim, worker, timeout_s: float) -> tuple[float, float]:
    """Seconds from now until the stale reconnect is counted, and until a new connection delivers again."""
    started = time.monotonic()
    first_conn = sim.connections()["open"][0]["id"]
    worker.wait_for(lambda: worker.metric("binance_ingest_ws_reconnects_total", reason="stale") >= 1, timeout_s,
                    "a reconnect counted as stale")
    detected = time.monotonic() - started
    worker.wait_for(lambda: any(c["id"] != first_conn and c["frames_sent"] > 0 for c in sim.connections()["open"])
                    and worker.metric("binance_ingest_ws_connected") == 1, 15, "a new connection delivering")
    return detected, time.monotonic() - started


def finish(sim, worker, stack_endpoints, prefix: str, label: str) -> accounting.Figures:
    final, state = accounting.quiesce(sim, worker)
    # >= 1: with a short deadline the quiescing silence itself can end one more connection as stale.
    assert final.get("ws_reconnects_total", reason="stale") >= 1, final.by_label("ws_reconnects_total", "reason")
    figures = accounting.check(sim, final, stack_endpoints.bootstrap_servers, stack_endpoints.registry_url, prefix,
                               state=state,
                               allowed_lost=accounting.tail_allowance(sim, state, "miniticker"))
    assert worker.stop() == 0
    print(f"\n[{label}] " + figures.line())
    return figures


def test_frame_deadline_catches_a_trickling_connection(sim_factory, worker_factory, stack_endpoints, unique_prefix):
    """Catches: removing the frame watchdog (pings are still answered here, so nothing else would notice:
    the connection would stay, delivering one frame every 3 s)."""
    sim, worker = start(sim_factory, worker_factory, unique_prefix, "--stale-timeout-s", "1.5")
    sim.fault("slow", delay_ms=3000, seconds=20)
    detected, recovered = wait_stale_and_recovery(sim, worker, 10)
    assert detected < 1.5 + 3.0 + 2.0, f"stale detected only after {detected:.1f}s"
    stale_logs = [e for e in worker.log_events() if e.get("reason") == "stale" and "silent for" in e.get("event", "")]
    assert stale_logs, "the watchdog did not log the stale connection"
    time.sleep(1.0)
    print(f"\n[stale/slow] deadline 1.5s: stale detected after {detected:.2f}s, delivering again after "
          f"{recovered:.2f}s")
    finish(sim, worker, stack_endpoints, unique_prefix, "stale/slow")


def test_silence_with_the_automatic_stream_aware_deadline(sim_factory, worker_factory, stack_endpoints,
                                                          unique_prefix):
    """Catches: no reconnect on a silent peer (no frames, no pongs), and a deadline that ignores the stream's
    push interval (``!miniTicker@arr`` pushes every 1 s: the automatic deadline must be 10 s, not less)."""
    sim, worker = start(sim_factory, worker_factory, unique_prefix)
    sim.fault("silence", seconds=60)
    detected, recovered = wait_stale_and_recovery(sim, worker, 25)
    assert 10.0 - 0.5 <= detected <= 10.0 + 4.0, f"stale after {detected:.1f}s, expected about the 10 s deadline"
    stale_logs = [e for e in worker.log_events() if e.get("reason") == "stale" and "silent for" in e.get("event", "")]
    assert stale_logs and "deadline 10.0 s" in stale_logs[0]["event"], stale_logs
    time.sleep(1.0)
    print(f"\n[stale/silence] automatic deadline 10 s: stale detected after {detected:.2f}s, delivering again "
          f"after {recovered:.2f}s")
    finish(sim, worker, stack_endpoints, unique_prefix, "stale/silence")
