"""Reconnect policy of the real worker against the simulator's close faults, with real Kafka behind it.

Proven here (issue item 1): every close is followed by a reconnect counted with its reason (1006, 1008, 1011,
and ``error`` when the server is gone); the delays grow exponentially from the initial delay, never above
the cap, drawn with full jitter; the worker never gives up; 1008 makes the next delay come from the upper
half of the slow cap (--backoff-slow-s); the backoff resets after a healthy period (30 s of data). After each
reconnect a REST snapshot (records marked ``rest_snapshot``) restores what the stream missed, and the
accounting identity holds (tests/faults/accounting.py).
"""

from __future__ import annotations

import time

import pytest

from ingest import config
from tests.faults import accounting

pytestmark = [pytest.mark.integration, pytest.mark.faults]

INITIAL_S = 0.5
CAP_S = 4.0
SLOW_S = 6.0  # --backoff-slow-s: 1008 waits [SLOW_S / 2, SLOW_S], above every ordinary delay
SYMBOLS = 6
HEALTHY_AFTER_S = 30.0  # ingest.binance.connection.HEALTHY_AFTER_S


def reconnect_delays(worker) -> list[tuple[str, float]]:
    """(reason, delay) of every 'reconnecting in' log line, in order."""
    return [(e["reason"], float(e["delay_s"])) for e in worker.log_events() if "delay_s" in e]


def close_and_wait(sim, worker, code: int) -> tuple[str, float, float]:
    """Close the current connection with ``code``; return (reason, logged delay, seconds until delivering again)."""
    before = len(reconnect_delays(worker))
    started = time.monotonic()
    sim.fault("close", code=code)
    worker.wait_for(lambda: len(reconnect_delays(worker)) > before, 15, f"a reconnect after close {code}")
    reason, delay = reconnect_delays(worker)[before]
    worker.wait_for(lambda: worker.metric("binance_ingest_ws_connected") == 1
                    and sim.stats()["connections_open"] == 1, SLOW_S + 15, "the worker delivering again")
    return reason, delay, time.monotonic() - started


def test_reconnect_backoff_reasons_reset_and_accounting(sim_factory, worker_factory, stack_endpoints, unique_prefix):
    """Catches: a reconnect loop without backoff growth, cap or jitter; a 1008 treated like any close; a backoff
    that never resets (the post-healthy delays would come from [0, cap] and exceed 0.5 s / 1 s with
    probability 1 - 1/128); a close not counted under its reason; a worker that exits when the server goes."""
    sim = sim_factory(symbols=SYMBOLS, interval=0.2, seed=11)
    worker = worker_factory("--streams", "!miniTicker@arr", "--ws-url", sim.ws_url, "--rest-url", sim.http_url,
                            "--topic-prefix", unique_prefix, "--backoff-initial-s", str(INITIAL_S),
                            "--backoff-max-s", str(CAP_S), "--backoff-slow-s", str(SLOW_S), "--combined", "false")
    worker.wait_ready()
    time.sleep(0.5)

    # 1. Flapping: every new connection is closed again at once, so no connection becomes healthy.
    flaps = []
    for code in (1011, 1006, 1011, 1006, 1011, 1011):
        flaps.append(close_and_wait(sim, worker, code))
    for attempt, (_, delay, _) in enumerate(flaps):
        ceiling = min(CAP_S, INITIAL_S * 2 ** attempt)
        assert 0 <= delay <= ceiling + 0.05, f"attempt {attempt}: delay {delay} above {ceiling}"
    assert [r for r, _, _ in flaps] == ["1011", "1006", "1011", "1006", "1011", "1011"]
    assert max(d for _, d, _ in flaps) > INITIAL_S, "delays never grew beyond the initial delay"
    spread = [d / min(CAP_S, INITIAL_S * 2 ** i) for i, (_, d, _) in enumerate(flaps)]
    assert min(spread) < 0.9, f"no jitter: every delay at its ceiling ({spread})"
    assert len({round(d, 2) for _, d, _ in flaps}) > 1, "identical delays: no jitter"

    # 2. 1008 (policy): the next delay comes from the upper half of the slow cap.
    reason, delay_1008, recover_1008 = close_and_wait(sim, worker, 1008)
    assert reason == "1008"
    assert SLOW_S / 2 - 0.05 <= delay_1008 <= SLOW_S + 0.05, f"1008 delay {delay_1008} not in [slow/2, slow]"

    # 3. A healthy period resets the backoff: right after it, delays start from the initial delay again.
    time.sleep(HEALTHY_AFTER_S + 1.0)
    reason_a, delay_a, _ = close_and_wait(sim, worker, 1011)
    reason_b, delay_b, _ = close_and_wait(sim, worker, 1006)
    assert (reason_a, reason_b) == ("1011", "1006")
    assert delay_a <= INITIAL_S + 0.05, f"backoff not reset after a healthy period: {delay_a}"
    assert delay_b <= 2 * INITIAL_S + 0.05, f"second delay after reset {delay_b} above {2 * INITIAL_S}"
    time.sleep(1.0)

    snapshots_before_quiesce = worker.metric("binance_ingest_records_accepted_total", source="rest_snapshot")
    final, state = accounting.quiesce(sim, worker)
    # 4. The simulator is gone: connection refused is an 'error' reconnect, and the worker keeps trying.
    worker.wait_for(lambda: worker.metric("binance_ingest_ws_reconnects_total", reason="error") >= 2, 20,
                    "reconnect attempts against a dead server")
    worker.check_alive()
    reconnects = final.by_label("ws_reconnects_total", "reason")
    assert reconnects.get("1011", 0) >= 5 and reconnects.get("1006", 0) >= 3 and reconnects.get("1008", 0) >= 1
    assert snapshots_before_quiesce > 0, "no REST snapshot after the reconnects"

    figures = accounting.check(sim, final, stack_endpoints.bootstrap_servers, stack_endpoints.registry_url,
                               unique_prefix, state=state,
                               allowed_lost=accounting.tail_allowance(sim, state, "miniticker"))
    assert worker.stop() == 0
    print(f"\n[reconnect] flap delays {[round(d, 3) for _, d, _ in flaps]} (ceilings "
          f"{[min(CAP_S, INITIAL_S * 2 ** i) for i in range(len(flaps))]}), 1008 delay {delay_1008:.3f}, "
          f"after healthy period {delay_a:.3f} then {delay_b:.3f}; recover after 1008 {recover_1008:.2f}s; "
          f"reconnects {reconnects}")
    print(figures.line())


def test_default_backoff_follows_the_reference_and_slows_down_to_a_minute():
    """The production defaults the test above scales down: first delay drawn from [0, 1 s], ordinary cap 5 s
    (Binance's reference: reconnect within 1-5 s), the exchange's slow-down signals up to 60 s."""
    settings = config.load(environ={})
    assert (settings.backoff_initial_s, settings.backoff_max_s, settings.backoff_slow_s) == (1.0, 5.0, 60.0)
