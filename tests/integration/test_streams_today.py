"""Binance as it is today (issue 13, DESIGN §6), end to end: simulator in its default mode -> `ingest run` ->
real Kafka + registry.

* ``!ticker@arr`` was retired on 2026-03-26 (accepted, never sent): the worker serves it per symbol.
* Symbols may be non-ASCII since 2025-12: a listing such as 币安人生USDT mid-run stops nothing, and its ticks
  land under its UTF-8 key in the partition Java's default partitioner picks.
* A REST snapshot covers only the symbols and kinds that are streamed.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.faults import accounting
from tests.kafka_reading import RegistryDecoder, java_partition, partitions_of, read_all

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NEW_SYMBOL = "币安人生USDT"


def _trading(sim) -> list[str]:
    _, _, info = sim.request("/api/v3/exchangeInfo")
    return [s["symbol"] for s in info["symbols"] if s["status"] == "TRADING"]


def _decoded(stack_endpoints, topic: str) -> list[tuple[object, dict]]:
    decoder = RegistryDecoder(stack_endpoints.registry_url)
    return [(rec, decoder.decode(rec.raw)[1]) for rec in read_all(stack_endpoints.bootstrap_servers, topic)]


def _event_ms(value: dict) -> int:
    et = value["event_time"]
    return round(et.timestamp() * 1000) if hasattr(et, "timestamp") else int(et)


def test_retired_ticker_arr_is_served_per_symbol_over_several_connections(sim_factory, worker_factory,
                                                                          stack_endpoints, unique_prefix):
    """`--streams '!ticker@arr,!miniTicker@arr'` against the default simulator (which, like Binance since
    2026-03-26, accepts !ticker@arr and never sends on it). Catches: subscribing the retired stream literally
    (an empty ticker topic), expansion not split over connections (130 streams per connection here), and
    duplicates or losses in the expansion (the accounting identity against the simulator's sent-log)."""
    sim = sim_factory(symbols=300, interval=1.0, seed=13)
    trading = _trading(sim)
    started = time.time()
    worker = worker_factory("--streams", "!ticker@arr,!miniTicker@arr", "--ws-url", sim.ws_url,
                            "--rest-url", sim.http_url, "--topic-prefix", unique_prefix,
                            "--max-streams-per-connection", "130")
    worker.wait_ready(timeout_s=30)
    worker.wait_for(lambda: worker.metric("binance_ingest_records_accepted_total",
                                          topic=f"{unique_prefix}.ticker", source="websocket") >= len(trading),
                    30 - (time.time() - started), "websocket ticker records of every symbol")
    time.sleep(2.0)
    connections = sim.connections()["open"]
    final, state = accounting.quiesce(sim, worker)
    figures = accounting.check_kinds(sim, final, stack_endpoints.bootstrap_servers, stack_endpoints.registry_url,
                                     unique_prefix, ("ticker", "miniticker"), state=state)
    assert worker.stop() == 0
    for fig in figures:
        print("\n" + fig.line())

    records = _decoded(stack_endpoints, f"{unique_prefix}.ticker")
    websocket = [v for _, v in records if v["source"] == "websocket"]
    assert all(v["stream"] == v["symbol"].lower() + "@ticker" for v in websocket)
    first_ws: dict[str, float] = {}
    for v in websocket:
        first_ws[v["symbol"]] = min(first_ws.get(v["symbol"], float("inf")), v["ingest_time"].timestamp()
                                    if hasattr(v["ingest_time"], "timestamp") else v["ingest_time"] / 1e6)
    within_30s = [s for s in trading if first_ws.get(s, float("inf")) - started <= 30.0]
    print(f"{len(within_30s)}/{len(trading)} TRADING symbols with a websocket ticker record within 30 s of the start; "
          f"{len(connections)} connections")
    assert len(within_30s) >= 0.95 * len(trading)
    per_event = Counter((v["symbol"], _event_ms(v)) for _, v in records)
    assert max(per_event.values()) == 1, "each (symbol, event time) exactly once"
    assert len(connections) >= 3, "301 streams at 130 per connection need three connections"
    retired_lines = [e for e in worker.log_events() if "retired" in str(e.get("event", ""))]
    assert len(retired_lines) == 1, retired_lines


@pytest.mark.parametrize("streams", [("@ticker", "--quote-assets", "USDT"), ("!miniTicker@arr",)],
                         ids=["ticker-pattern", "miniTicker-arr"])
def test_non_ascii_listing_mid_run_is_streamed_under_its_utf8_key(streams, sim_factory, worker_factory,
                                                                  stack_endpoints, unique_prefix):
    """Catches: the stream-name rule refusing the symbol (the refresh loop used to die on it), URL or SUBSCRIBE
    spelling the server cannot match, a key that is not the symbol's UTF-8 bytes, a partition other than
    Java's murmur2 choice, and the symbols topic missing the listing."""
    sim = sim_factory(symbols=12, interval=0.25, seed=17)
    kind = "ticker" if streams[0] == "@ticker" else "miniticker"
    worker = worker_factory("--streams", *streams, "--ws-url", sim.ws_url, "--rest-url", sim.http_url,
                            "--topic-prefix", unique_prefix, "--exchange-info-refresh-s", "1")
    worker.wait_ready()
    sim.listing(NEW_SYMBOL, "币安人生", "USDT")
    worker.wait_for(lambda: worker.metric("binance_ingest_symbols_listed_total") >= 1, 15, "the listing")
    time.sleep(3.0)
    worker.check_alive()
    assert worker.metric("binance_ingest_symbols_skipped_total") == 0
    assert worker.stop() == 0

    key = NEW_SYMBOL.encode("utf-8")
    topic = f"{unique_prefix}.{kind}"
    partitions = partitions_of(stack_endpoints.bootstrap_servers, topic)
    new = [(rec, v) for rec, v in _decoded(stack_endpoints, topic) if v["symbol"] == NEW_SYMBOL]
    ws = [(rec, v) for rec, v in new if v["source"] == "websocket"]
    assert len(ws) >= 3, f"{len(ws)} websocket ticks of {NEW_SYMBOL} in {topic}"
    for rec, _ in new:
        assert rec.key == key
        assert rec.partition == java_partition(key, partitions)
    if kind == "ticker":
        assert {v["stream"] for _, v in ws} == {"币安人生usdt@ticker"}
    symbols = {rec.key for rec in read_all(stack_endpoints.bootstrap_servers, f"{unique_prefix}.symbols")}
    assert key in symbols


def test_snapshot_after_a_reconnect_covers_only_the_streamed_symbols_per_kind(sim_factory, worker_factory,
                                                                             stack_endpoints, unique_prefix):
    """`!miniTicker@arr,<one symbol>@ticker`: after reconnects the ticker topic holds snapshot records of that
    symbol only (it used to get one of every symbol, which no stream of the worker carries), the miniticker
    topic those of the other symbols too.

    A snapshot record is only produced when it is newer than what the streams delivered, so the market ticks
    one random symbol at a time (rate 4/s over 5 symbols) and each cycle silences the connection for 3 s
    before dropping it: the symbol most likely ticked unseen, and the snapshot after the reconnect restores
    it. Cycles repeat until the ticker snapshot of the symbol is in (each succeeds with p ~ 0.75)."""
    sim = sim_factory(symbols=5, interval=0.25, rate=4, seed=19)
    trading = _trading(sim)
    one = trading[3]
    worker = worker_factory("--streams", f"!miniTicker@arr,{one.lower()}@ticker", "--ws-url", sim.ws_url,
                            "--rest-url", sim.http_url, "--topic-prefix", unique_prefix,
                            "--backoff-initial-s", "0.2")
    worker.wait_ready()
    ticker_snapshots = 0.0
    for cycle in range(1, 9):
        sim.fault("silence", seconds=6)  # the market moves on while the worker hears nothing ...
        time.sleep(3.0)
        sim.fault("close", code=1006)  # ... until its connection drops; the reconnect's snapshot restores it
        worker.wait_for(lambda c=cycle: worker.metric("binance_ingest_ws_reconnects_total", reason="1006") >= c,
                        15, "a reconnect")
        worker.wait_for(lambda: worker.metric("binance_ingest_ws_connected") >= 1, 15, "delivering again")
        time.sleep(0.5)
        ticker_snapshots = worker.metric("binance_ingest_records_accepted_total", topic=f"{unique_prefix}.ticker",
                                         source="rest_snapshot")
        if ticker_snapshots:
            break
    assert worker.stop() == 0
    print(f"\nticker snapshot of {one} after {cycle} reconnect(s)")

    ticker = [v for _, v in _decoded(stack_endpoints, f"{unique_prefix}.ticker")]
    assert {v["symbol"] for v in ticker if v["source"] == "rest_snapshot"} == {one}
    assert {v["symbol"] for v in ticker} == {one}
    mini_snapshot_symbols = {v["symbol"] for _, v in _decoded(stack_endpoints, f"{unique_prefix}.miniticker")
                             if v["source"] == "rest_snapshot"}
    assert mini_snapshot_symbols - {one}, "the all-market mini ticker snapshot restores the other symbols too"
    assert mini_snapshot_symbols <= set(trading)
