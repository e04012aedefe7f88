"""Symbols that left TRADING get their final state into Kafka (issue 17).

A soak found symbols delisted while no replica streamed ``!miniTicker@arr`` (broker outage, shard unowned) whose
newest Kafka record was older than the last tick Binance sent: the restore snapshot asks ``symbolStatus=TRADING``
only. Listings remember such symbols for 24 h; snapshots of all-market streams ask for them; a refresh that sees a
delisting snapshots just those symbols at once. Fakes here; the real simulator is in tests/integration.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from ingest.config import Settings
from ingest.listings import LEFT_KEEP_S, Listings
from ingest.restore import Snapshots
from tests.unit.test_pipeline import make
from tests.unit.test_snapshot import FakeRest


def info(server_time: int, **status: str) -> dict[str, Any]:
    return {"serverTime": server_time, "symbols": [{"symbol": name, "status": st} for name, st in status.items()]}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def no_publish(known: Any, names: Any) -> int:
    return 0


def listings() -> tuple[Listings, Clock, list[list[str]]]:
    clock = Clock()
    seen: list[list[str]] = []
    got = Listings(Settings(), rest=None, clock=clock)  # type: ignore[arg-type]  # no REST call in apply()
    return got, clock, seen


def apply(got: Listings, data: dict[str, Any], seen: list[list[str]]) -> None:
    async def on_delisted(symbols: list[str]) -> None:
        seen.append(symbols)

    asyncio.run(got.apply(data, no_publish, None, on_delisted))


def test_left_symbols_are_remembered_for_24_hours_then_pruned():
    got, clock, seen = listings()
    apply(got, info(1, BTCUSDT="TRADING", OLDUSDT="TRADING", GONEUSDT="TRADING", BRKUSDT="BREAK"), seen)
    assert got.recently_left() == frozenset() and seen == []  # the first load is no delisting (BRKUSDT never traded)
    apply(got, info(2, BTCUSDT="TRADING", OLDUSDT="BREAK", BRKUSDT="BREAK"), seen)  # GONEUSDT vanished
    assert got.recently_left() == {"OLDUSDT", "GONEUSDT"}
    assert [sorted(s) for s in seen] == [["GONEUSDT", "OLDUSDT"]]
    clock.now += LEFT_KEEP_S / 2
    apply(got, info(3, BTCUSDT="BREAK", OLDUSDT="BREAK", BRKUSDT="BREAK"), seen)
    clock.now += LEFT_KEEP_S / 2 + 1  # OLDUSDT and GONEUSDT left over 24 h ago, BTCUSDT 12 h ago
    assert got.recently_left() == {"BTCUSDT"}
    assert got._left.keys() == {"BTCUSDT"}  # forgotten, not only hidden: bounded
    clock.now += LEFT_KEEP_S
    assert got.recently_left() == frozenset() and got._left == {}


def test_a_relisted_symbol_is_no_longer_left():
    got, _, seen = listings()
    apply(got, info(1, OLDUSDT="TRADING"), seen)
    apply(got, info(2, OLDUSDT="BREAK"), seen)
    assert got.recently_left() == {"OLDUSDT"}
    apply(got, info(3, OLDUSDT="TRADING"), seen)
    assert got.recently_left() == frozenset() and len(seen) == 1


REST = {"lastPrice": "2.00000000", "openPrice": "1.00000000", "highPrice": "2.00000000", "lowPrice": "1.00000000",
        "volume": "1.00000000", "quoteVolume": "1.00000000"}


def rest_entry(symbol: str, status: str, close_time: int) -> dict[str, Any]:
    return {"symbol": symbol, "status": status, "closeTime": close_time, **REST}


def test_restore_produces_left_symbols_once_and_the_delisting_snapshot_is_not_repeated():
    pipeline, sink = make()
    rest = FakeRest([rest_entry("BTCUSDT", "TRADING", 4000), rest_entry("OLDUSDT", "BREAK", 4000)])
    left = {"OLDUSDT"}
    snapshots = Snapshots(rest, pipeline.on_snapshot, left=lambda: frozenset(left))
    # the delisting snapshot: only OLDUSDT, one MINI listed request
    assert asyncio.run(snapshots.restore_left(["!miniTicker@arr"], ["OLDUSDT"], "1 delisted")) == 1
    assert rest.calls == [(("OLDUSDT",), True, False)]
    # a reconnect restore afterwards asks for it again; the dedupe drops the copy: one record per symbol in Kafka
    assert asyncio.run(snapshots.restore(["!miniTicker@arr"], "connection c1")) == 1  # BTCUSDT only
    assert rest.calls[1:] == [(None, True, True), (("OLDUSDT",), True, False)]
    assert sorted(key for _, key, *_ in sink.sent) == [b"BTCUSDT", b"OLDUSDT"]
    # nothing left: no listed request at all
    left.clear()
    rest.calls.clear()
    asyncio.run(snapshots.restore(["!miniTicker@arr"], "connection c2"))
    assert rest.calls == [(None, True, True)]


def test_worker_snapshots_delistings_for_the_all_market_streams_it_owns():
    from ingest.worker import Worker

    pipeline, sink = make()
    worker = Worker(Settings(topic_prefix="t.spot", streams=["!miniTicker@arr", "btcusdt@ticker"]))
    rest = FakeRest([rest_entry("OLDUSDT", "BREAK", 4000)])
    worker.pipeline = pipeline
    worker.snapshots = Snapshots(rest, pipeline.on_snapshot)
    worker.source = SimpleNamespace()  # type: ignore[assignment]  # only "connected at all" is asked
    worker.all_streams = ["!miniTicker@arr", "btcusdt@ticker"]
    asyncio.run(worker._on_delisted(["OLDUSDT"]))
    assert rest.calls == [(("OLDUSDT",), True, False)]
    assert [key for _, key, *_ in sink.sent] == [b"OLDUSDT"]
    # a coordinated replica that does not own the all-market stream's shard asks nothing (its owner does)
    from ingest.coordination import shard_of

    others = frozenset(range(4)) - {shard_of("!miniTicker@arr", 4)}
    worker.coordinator = SimpleNamespace(owned=others, shards=4)  # type: ignore[assignment]
    rest.calls.clear()
    asyncio.run(worker._on_delisted(["OLDUSDT"]))
    assert rest.calls == []
    worker.coordinator = SimpleNamespace(owned=frozenset({shard_of("!miniTicker@arr", 4)}), shards=4)  # type: ignore[assignment]
    asyncio.run(worker._on_delisted(["OLDUSDT"]))
    assert rest.calls == [(("OLDUSDT",), True, False)]  # its owner does ask (the dedupe drops the repeat)
    assert [key for _, key, *_ in sink.sent] == [b"OLDUSDT"]
