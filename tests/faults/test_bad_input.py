"""Bad input (issue item 7): more than 10,000 malformed or hostile frames through the simulator's ``malformed``
fault, into the real worker, with real Kafka behind it.

Kinds (ingest/sim/faults.py): invalid JSON, wrong types, missing fields, decimals beyond the schema's scale
(DECIMAL(38, 8)), unknown event types, invalid UTF-8, and frames larger than ``--max-frame-bytes``: between
1x and 2x the limit they are read and dead-lettered with their bytes (``frame_too_large``); above 2x the
WebSocket client refuses them (close 1009, reconnect counted as ``closed``) so a hostile peer cannot make
the worker buffer unbounded memory.

Compared: every malformed frame the simulator sent (its sent-log marks them) is exactly one record in the
dead-letter topic, and ``deadletter_total`` equals both; dead-letter reasons match the kinds; the process
never exits; its RSS (``/proc/<pid>/status``) grows by less than a generous bound; the good tickers sent in
between satisfy the accounting identity.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from tests.faults import accounting
from tests.kafka_reading import read_all

pytestmark = [pytest.mark.integration, pytest.mark.faults]

MAX_FRAME = 64 * 1024
BATCH = 500
SMALL_KINDS = ("invalid_json", "wrong_types", "missing_fields", "excess_decimals", "unknown_event", "invalid_utf8")
PER_KIND = 1700  # 6 x 1,700 = 10,200 small hostile frames
OVERSIZED = 40  # between 1x and 2x --max-frame-bytes
HUGE = 3  # above 2x: refused by the WebSocket layer
RSS_BOUND_KB = 150 * 1024
EXPECTED_REASON = {"invalid_json": {"invalid_json"}, "wrong_types": {"wrong_type"}, "missing_fields": {"missing_field"},
                   "excess_decimals": {"decimal_out_of_range"}, "unknown_event": {"unknown_event_type"},
                   "invalid_utf8": {"invalid_utf8"}, "oversized": {"frame_too_large"}}


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def send(sim, worker, kind: str, count: int, **params) -> None:
    """Inject ``count`` frames in batches, each batch sent before the next (the simulator queue stays small)."""
    while count > 0:
        n = min(BATCH, count)
        before = sim.stats()["malformed_sent"].get(kind, 0)
        sim.fault("malformed", kind=kind, count=n, **params)
        sim.wait_for(lambda s, b=before, n=n: s["malformed_sent"].get(kind, 0) >= b + n, timeout=30)
        worker.check_alive()
        count -= n


def test_ten_thousand_hostile_frames(sim_factory, worker_factory, stack_endpoints, unique_prefix):
    """Catches: a crash or a silent loss on any hostile frame (dead-letter count != frames sent), a reason
    mislabelled, invalid UTF-8 tearing down the connection instead of being dead-lettered, no frame-size
    limit (oversized frames would be produced or buffered), and unbounded memory growth."""
    sim = sim_factory(symbols=4, interval=0.5, seed=21)
    worker = worker_factory("--streams", "!miniTicker@arr", "--ws-url", sim.ws_url, "--rest-url", sim.http_url,
                            "--topic-prefix", unique_prefix, "--max-frame-bytes", str(MAX_FRAME),
                            "--snapshot-on-connect", "false", "--combined", "false", "--backoff-initial-s", "0.2")
    worker.wait_ready()
    time.sleep(1.0)
    rss_before = rss_kb(worker.proc.pid)
    started = time.monotonic()
    for kind in SMALL_KINDS:
        send(sim, worker, kind, PER_KIND)
    send(sim, worker, "oversized", OVERSIZED, size=int(MAX_FRAME * 1.5))
    worker.wait_for(lambda: worker.metric("binance_ingest_deadletter_total") >= len(SMALL_KINDS) * PER_KIND + OVERSIZED,
                    60, "every hostile frame dead-lettered")
    elapsed = time.monotonic() - started
    rss_after = rss_kb(worker.proc.pid)
    assert worker.metric("binance_ingest_ws_reconnects_total") == 0, "a frame below 2x the limit cost a reconnect"

    closed_before = worker.metric("binance_ingest_ws_reconnects_total", reason="closed")
    for i in range(HUGE):
        sim.fault("malformed", kind="oversized", count=1, size=MAX_FRAME * 3)
        worker.wait_for(lambda i=i: worker.metric("binance_ingest_ws_reconnects_total", reason="closed")
                        >= closed_before + i + 1, 15, "the huge frame refused with a reconnect")
        worker.wait_for(lambda: worker.metric("binance_ingest_ws_connected") == 1, 15, "reconnected")
    time.sleep(1.0)
    final, state = accounting.quiesce(sim, worker)

    faults = [line for line in sim.sent_records() if line.get("fault") == "malformed"]
    by_kind = Counter(line["kind"] for line in faults)
    small_or_limit = sum(n for k, n in by_kind.items() if k != "oversized") + sum(
        1 for line in faults if line["kind"] == "oversized" and line["bytes"] <= 2 * MAX_FRAME)
    assert small_or_limit == len(SMALL_KINDS) * PER_KIND + OVERSIZED, by_kind
    assert small_or_limit >= 10_000

    dead = read_all(stack_endpoints.bootstrap_servers, f"{unique_prefix}.deadletter")
    reasons = Counter(r.headers["reason"].decode() for r in dead)
    for kind, expected in EXPECTED_REASON.items():
        n = by_kind[kind] - (HUGE if kind == "oversized" else 0)
        assert sum(reasons[r] for r in expected) == n, f"{kind}: {n} sent, dead letters by reason {reasons}"
    assert all(len(r.raw) <= 2 * MAX_FRAME for r in dead)
    figures = accounting.check(sim, final, stack_endpoints.bootstrap_servers, stack_endpoints.registry_url,
                               unique_prefix, state=state, dead_letter_frames=small_or_limit,
                               allowed_lost=accounting.tail_allowance(sim, state, "miniticker", codes=(1009,)))
    assert rss_after - rss_before < RSS_BOUND_KB, f"RSS grew {rss_before} -> {rss_after} kB"
    assert worker.stop() == 0
    print(f"\n[bad-input] {small_or_limit} hostile frames dead-lettered in {elapsed:.1f}s ({dict(by_kind)}; "
          f"{HUGE} above 2x the limit refused with close 1009); dead letters by reason {dict(reasons)}; "
          f"RSS {rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MiB")
    print(figures.line())
