"""Per-symbol streams over three coordinated replicas: every TRADING symbol streamed by exactly one replica.

Ground truth is the simulator's own view of its open connections and their subscriptions (``/_sim/connections``),
sampled while the replicas run and while one of them leaves and its shards move to the other two.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from ingest.binance.streams import trading_symbols
from tests.scaleout.replicas import owned_stream_count, readyz, start_replica, wait_until
from tests.sim_fixture import require_captures

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def subscriptions(sim) -> Counter[str]:
    """How many open simulator connections carry each stream right now."""
    held: Counter[str] = Counter()
    for conn in sim.connections()["open"]:
        if conn["close_code"] is None:
            held.update(s.lower() for s in conn["streams"])
    return held


def test_per_symbol_streams_over_three_replicas_each_symbol_exactly_once(sim_factory, worker_factory,
                                                                         unique_prefix):
    """Catches: replicas that ignore their assignment (every symbol three times), a hash that differs between
    processes (some symbols twice, some never: Python's salted ``hash`` would do that), and a handover that
    subscribes the new owner before the old one unsubscribed (a symbol briefly on two replicas)."""
    exchange_info = json.loads(require_captures().read_text())
    symbols = trading_symbols(exchange_info)
    wanted = {f"{s.lower()}@miniticker" for s in symbols}
    sim = sim_factory(interval=1.0, seed=8, sent_log=False)
    replicas = [start_replica(worker_factory, sim, unique_prefix, "@miniTicker") for _ in range(3)]
    for r in replicas:
        r.wait_ready()
    wait_until(lambda: sum(owned_stream_count(r) for r in replicas) == len(wanted)
               and subscriptions(sim) == Counter(dict.fromkeys(wanted, 1)), 60, "every symbol subscribed once")
    shares = [owned_stream_count(r) for r in replicas]
    owned = [readyz(r)["shards_owned"] for r in replicas]
    print(f"\n{len(wanted)} TRADING symbols over 3 replicas: {shares} streams, shards {owned}")
    assert all(shares), "each replica streams a share"
    assert sorted(s for o in owned for s in o) == list(range(readyz(replicas[0])["shards"]))

    # One replica leaves; sample the simulator's view throughout the handover: never a symbol on two replicas.
    leaving = replicas.pop(0)
    leaving.proc.send_signal(15)
    worst = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        held = subscriptions(sim)
        worst = max(worst, max(held.values(), default=0))
        if leaving.proc.poll() is not None and held == Counter(dict.fromkeys(wanted, 1)) \
                and sum(owned_stream_count(r) for r in replicas) == len(wanted):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the leaving replica's symbols did not move to the other two")
    assert leaving.stop() == 0
    print(f"after one replica left: {[owned_stream_count(r) for r in replicas]} streams; most connections "
          f"holding one symbol at any sample: {worst}")
    assert worst == 1
