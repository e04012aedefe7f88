"""Binance's ``serverShutdown`` event (since 2026-05, issue 13 item 4) against the simulator, real Kafka and registry.

The simulator's ``server_shutdown`` fault writes the event on the connection, keeps streaming, and closes the
connection ``grace`` seconds later (1001). The worker must replace that connection at once, make before break:
the replacement delivers before the old one closes, so no tick falls between them; the overlap is dropped by
the per-symbol dedupe, so none is in Kafka twice; the event itself is never a dead letter. REST snapshots are
off: the claim is that the *stream* has no gap, not that a snapshot papered over one.

Compared: every (symbol, E) the simulator sent on any connection is in Kafka, once (accounting identity,
tests/faults/accounting.py); the old and the new connection received some of the same tickers; the old one
was closed by the worker (1000) before the server's grace ran out (no 1001); the widest per-symbol event-time
gap in Kafka is at most one push interval plus half of one (a missing tick would make it two intervals),
unless the simulator itself ticked late for that symbol (then its own widest gap is the bound).
"""

from __future__ import annotations

import itertools
import time

import pytest

from tests.faults import accounting

pytestmark = [pytest.mark.integration, pytest.mark.faults]

INTERVAL_S = 0.5
GRACE_S = 4.0


def widest_gaps(times: dict[str, list[int]]) -> dict[str, int]:
    """Per symbol, the widest step between consecutive distinct event times (ms)."""
    out = {}
    for symbol, values in times.items():
        ordered = sorted(set(values))
        out[symbol] = max((b - a for a, b in itertools.pairwise(ordered)), default=0)
    return out


@pytest.mark.parametrize("combined", ["true", "false"])
def test_server_shutdown_is_replaced_make_before_break(sim_factory, worker_factory, stack_endpoints, unique_prefix,
                                                       combined):
    """Catches: the event dead-lettered (deadletter_total 1), no early replacement (the server's 1001 after the
    grace would end the connection: a close 1001 and a gap while reconnecting), break-then-make (no ticker on
    both connections), and the overlap produced twice (duplicates in Kafka)."""
    sim = sim_factory(symbols=6, interval=INTERVAL_S, seed=23)
    worker = worker_factory("--streams", "!miniTicker@arr", "--ws-url", sim.ws_url, "--rest-url", sim.http_url,
                            "--topic-prefix", unique_prefix, "--snapshot-on-connect", "false",
                            "--combined", combined)
    worker.wait_ready()
    time.sleep(2 * INTERVAL_S)
    old = sim.connections()["open"]
    assert len(old) == 1
    applied = sim.fault("server_shutdown", grace=GRACE_S)
    assert applied["connections"] == [old[0]["id"]]
    worker.wait_for(lambda: worker.metric("binance_ingest_ws_reconnects_total", reason="server_shutdown") == 1,
                    GRACE_S, "the replacement before the server's grace ran out")
    readiness = []
    started = time.monotonic()
    while time.monotonic() - started < GRACE_S + 1.0:  # past the server's close time: nothing must happen then
        readiness.append(worker.get("/readyz")[0])
        time.sleep(0.2)
    final, state = accounting.quiesce(sim, worker)

    assert final.get("ws_server_shutdowns_total") == 1
    reconnects = final.by_label("ws_reconnects_total", "reason")
    assert set(reconnects) <= {"server_shutdown", "closed", "error"}, reconnects  # closed/error: the sim stopped
    assert reconnects["server_shutdown"] == 1
    assert state.stats["server_shutdowns_sent"] == 1
    old_close = [c for c in state.closed if c["id"] == old[0]["id"]]
    assert old_close and old_close[0]["close_code"] == 1000, f"the worker did not close the old one: {old_close}"
    assert state.stats["closes"].get("1001", 0) == 0, "the server had to close the announced connection itself"
    assert readiness.count(200) == len(readiness), f"/readyz flipped around the replacement: {readiness}"

    figures = accounting.check(sim, final, stack_endpoints.bootstrap_servers, stack_endpoints.registry_url,
                               unique_prefix, state=state, dead_letter_frames=0,
                               allowed_lost=accounting.tail_allowance(sim, state, "miniticker", codes=(1000,)))
    assert figures.missing == [], f"gap: {len(figures.missing)} sent tickers not in Kafka: {figures.missing[:5]}"
    sent = accounting.sent_tickers(sim, "miniticker")
    by_conn: dict[int, set[tuple[str, int]]] = {}
    for line in sent:
        by_conn.setdefault(line["conn"], set()).add((line["symbol"], line["E"]))
    assert len(by_conn) == 2, f"expected the old and the replacement connection, got {sorted(by_conn)}"
    first, second = sorted(by_conn)
    shared = len(by_conn[first] & by_conn[second])
    assert shared > 0, "no ticker on both connections: the old one closed before the replacement delivered"
    assert figures.duplicates_websocket >= shared, "the overlap was not deduplicated by the pipeline"

    records = accounting.read_tickers(stack_endpoints.bootstrap_servers, stack_endpoints.registry_url,
                                      f"{unique_prefix}.miniticker")
    in_kafka: dict[str, list[int]] = {}
    for rec in records:
        in_kafka.setdefault(rec.symbol, []).append(rec.event_time)
    sent_times: dict[str, list[int]] = {}
    for line in sent:
        sent_times.setdefault(line["symbol"], []).append(line["E"])
    kafka_gaps, sim_gaps = widest_gaps(in_kafka), widest_gaps(sent_times)
    bound_ms = 1.5 * INTERVAL_S * 1000
    too_wide = {s: g for s, g in kafka_gaps.items() if g > max(bound_ms, sim_gaps.get(s, 0))}
    assert not too_wide, f"per-symbol gaps above {bound_ms:.0f} ms in Kafka: {too_wide} (simulator's own {sim_gaps})"
    assert worker.stop() == 0
    print(f"\n[server_shutdown combined={combined}] tickers on both connections {shared}, widest gap in Kafka "
          f"{max(kafka_gaps.values())} ms (simulator's own {max(sim_gaps.values())} ms, interval "
          f"{INTERVAL_S * 1000:.0f} ms), reconnects {reconnects}, dead letters 0, duplicates in Kafka 0")
    print(figures.line())
