"""24 h rotation without a gap (issue item 3), with the lifetime scaled down to seconds.

The simulator closes every connection after ``--max-lifetime`` (like Binance at 24 h); the worker rotates
before that (``--rotate-after-s``): it opens the replacement, waits until it delivers, then closes the old
one. During the overlap both connections deliver the same tickers; the per-symbol dedupe drops the second
copy. REST snapshots are off here so that every record in Kafka comes from the streams: the claim is that
the *stream* has no gap, not that a snapshot papered over one.

Compared: every (symbol, E) the simulator sent on any connection is in Kafka, none twice (zero duplicate);
at every hand-over the old and the new connection received some of the same tickers (so no market tick
fell between them: zero gap); the overlap was suppressed by the dedupe; and no connection reached the
server's lifetime limit (no close 1001 from the simulator).
"""

from __future__ import annotations

import itertools
import time

import pytest

from tests.faults import accounting

pytestmark = [pytest.mark.integration, pytest.mark.faults]

ROTATE_AFTER_S = 3.0
LIFETIME_S = 4.5
RUN_S = 11.0


def test_make_before_break_rotation_has_no_gap_and_no_duplicate(sim_factory, worker_factory, stack_endpoints,
                                                                unique_prefix):
    """Catches: break-then-make rotation or no rotation at all (the simulator's lifetime close, 1001, would end
    connections and the tickers sent while reconnecting would be missing), and a missing dedupe (overlap
    tickers would be in Kafka twice)."""
    sim = sim_factory(symbols=6, interval=0.2, seed=17, max_lifetime=LIFETIME_S)
    worker = worker_factory("--streams", "!miniTicker@arr", "--ws-url", sim.ws_url, "--rest-url", sim.http_url,
                            "--topic-prefix", unique_prefix, "--rotate-after-s", str(ROTATE_AFTER_S),
                            "--snapshot-on-connect", "false", "--combined", "false")
    worker.wait_ready()
    started = time.monotonic()
    readiness = []
    while time.monotonic() - started < RUN_S:
        readiness.append(worker.get("/readyz")[0])
        time.sleep(0.2)
    final, state = accounting.quiesce(sim, worker)

    rotations = final.get("ws_reconnects_total", reason="rotation")
    assert rotations >= 2, f"only {rotations} rotations in {RUN_S}s with --rotate-after-s {ROTATE_AFTER_S}"
    other = {k: v for k, v in final.by_label("ws_reconnects_total", "reason").items() if k != "rotation"}
    assert not other or set(other) <= {"closed", "error"}, f"unexpected reconnects: {other}"  # closed: sim stop
    lifetime_closes = state.stats["closes"].get("1001", 0)
    assert lifetime_closes == 0, f"{lifetime_closes} connections hit the simulator's lifetime limit"

    figures = accounting.check(sim, final, stack_endpoints.bootstrap_servers, stack_endpoints.registry_url,
                               unique_prefix, allowed_lost=accounting.tail_allowance(sim, state, "miniticker",
                                                                                    codes=(1000,)))
    assert figures.missing == [], f"gap: {len(figures.missing)} sent tickers not in Kafka: {figures.missing[:5]}"
    # Make before break, proven per hand-over: the replacement received some of the very tickers the old
    # connection received (a break-then-make hand-over has none in common: ticks in between go to no one).
    by_conn: dict[int, set[tuple[str, int]]] = {}
    for line in accounting.sent_tickers(sim, "miniticker"):
        by_conn.setdefault(line["conn"], set()).add((line["symbol"], line["E"]))
    conns = sorted(by_conn)
    overlaps = [len(by_conn[a] & by_conn[b]) for a, b in itertools.pairwise(conns)]
    assert len(conns) >= 3 and all(overlaps), f"a hand-over without overlap: connections {conns}, shared {overlaps}"
    assert readiness.count(200) == len(readiness), f"/readyz flipped during rotations: {readiness}"
    assert figures.duplicates_websocket > 0, "the overlap was not deduplicated by the pipeline"
    assert worker.stop() == 0
    print(f"\n[rotation] rotations={rotations:g} in {RUN_S}s (rotate after {ROTATE_AFTER_S}s, server lifetime "
          f"{LIFETIME_S}s), connections {state.stats['connections_total']}, tickers shared per hand-over "
          f"{overlaps}, gap 0, duplicates in Kafka 0")
    print(figures.line())
