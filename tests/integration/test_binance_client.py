"""The Binance client (StreamSource + RestClient) against the real exchange simulator (``ingest sim`` as a
subprocess, tests/sim_fixture.py): reconnect reasons per close code, the stale watchdog after silence,
rotation before the server's lifetime limit without a gap, live SUBSCRIBE/UNSUBSCRIBE within the simulator's
5-messages-per-second rule, and REST 429/418 handling.

No Kafka here, so these are marked ``faults`` (fault injection against real servers), not ``integration``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from ingest import metrics
from ingest.binance import streams as st
from ingest.binance.connection import FrameMeta, StreamSource
from ingest.binance.rest import TICKER_PRICE, RestClient
from ingest.config import Settings

pytestmark = pytest.mark.faults

SCENARIO_TIMEOUT_S = 45.0


def reconnects(reason: str) -> float:
    return metrics.REGISTRY.get_sample_value("binance_ingest_ws_reconnects_total", {"reason": reason}) or 0.0


class Seen:
    """Every ticker received: (symbol, E) per connection, and the connection announcements."""

    def __init__(self) -> None:
        self.events: dict[str, set[int]] = defaultdict(set)
        self.by_connection: dict[str, set[tuple[str, int]]] = defaultdict(set)
        self.connected: list[str] = []
        self.frames = 0

    async def on_frame(self, frame: bytes | str, meta: FrameMeta) -> None:
        self.frames += 1
        payload = orjson.loads(frame)
        data = payload["data"] if isinstance(payload, dict) and "data" in payload else payload
        for ticker in data if isinstance(data, list) else [data]:
            self.events[ticker["s"]].add(ticker["E"])
            self.by_connection[meta.connection_id].add((ticker["s"], ticker["E"]))

    async def on_connected(self, connection_id: str) -> None:
        self.connected.append(connection_id)


def settings_for(sim: Any, **overrides: Any) -> Settings:
    base = Settings(ws_url=sim.ws_url, rest_url=sim.http_url, stale_timeout_s=2.0, backoff_initial_s=0.05,
                    backoff_max_s=0.4, backoff_slow_s=0.4)
    return dataclasses.replace(base, **overrides)


async def until(condition: Callable[[], bool], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The fixture's control calls block; keep the event loop (and our client) running meanwhile."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S))


async def serve(source: StreamSource, seen: Seen) -> asyncio.Task[None]:
    task = asyncio.create_task(source.run())
    await until(lambda: source.connected and bool(seen.connected))
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize(("code", "reason"), [(1006, "1006"), (1008, "1008"), (1011, "1011")])
def test_reconnect_after_each_close_code_counts_its_reason(sim_factory, code, reason):
    sim = sim_factory(symbols=5, interval=0.1, seed=1)

    async def scenario():
        seen = Seen()
        source = StreamSource(settings_for(sim), ["!miniTicker@arr"], seen.on_frame, seen.on_connected)
        before = reconnects(reason)
        task = await serve(source, seen)
        await in_thread(sim.fault, "close", code=code)
        await until(lambda: len(seen.connected) >= 2 and source.connected)
        frames_before = seen.frames
        await until(lambda: seen.frames > frames_before + 3)
        await stop(task)
        assert reconnects(reason) - before == 1
        assert seen.connected[:2] == ["ws0-1", "ws0-2"]

    run(scenario)
    closed = sim.connections()["closed"]
    assert closed[0]["close_code"] == code


def test_silence_triggers_the_stale_watchdog(sim_factory):
    sim = sim_factory(symbols=5, interval=0.1, seed=2)

    async def scenario():
        seen = Seen()
        source = StreamSource(settings_for(sim, stale_timeout_s=1.0), ["!miniTicker@arr"], seen.on_frame,
                              seen.on_connected)
        before = reconnects("stale")
        task = await serve(source, seen)
        silenced_at = time.monotonic()
        await in_thread(sim.fault, "silence", seconds=30)  # far longer than the deadline: only we can end it
        await until(lambda: len(seen.connected) >= 2, within_s=10)
        recovered_after = time.monotonic() - silenced_at
        await stop(task)
        assert reconnects("stale") - before == 1
        assert 1.0 <= recovered_after < 5.0

    run(scenario)


def test_rotation_before_the_lifetime_limit_has_no_gap(sim_factory):
    # The simulator closes every connection after 4 s (Binance: 24 h); we rotate after 1.5 s (Binance: 23 h).
    sim = sim_factory(symbols=4, interval=0.1, seed=3, max_lifetime=4)

    async def scenario():
        seen = Seen()
        s = settings_for(sim, rotate_after_s=1.5)
        before_rotation, before_closed = reconnects("rotation"), reconnects("closed")
        source = StreamSource(s, ["!miniTicker@arr"], seen.on_frame, seen.on_connected)
        task = await serve(source, seen)
        await until(lambda: reconnects("rotation") - before_rotation >= 3, within_s=15)
        await asyncio.sleep(0.3)
        await stop(task)
        assert reconnects("closed") == before_closed, "the server's lifetime limit was never reached"
        return seen

    seen = asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S))
    sent: dict[str, set[int]] = defaultdict(set)
    for line in sim.sent_records():
        if "symbol" in line:
            sent[line["symbol"]].add(line["E"])
    assert set(sent) == set(seen.events)
    for symbol, received in seen.events.items():
        window = {e for e in sent[symbol] if min(received) <= e <= max(received)}
        missing = window - received
        assert not missing, f"{symbol}: {len(missing)} of {len(window)} event times never arrived: a gap"
    # the connections really overlapped: some tickers arrived on two connections
    ids = list(seen.by_connection)  # in order of first frame
    assert any(seen.by_connection[a] & seen.by_connection[b] for a, b in itertools.pairwise(ids))
    assert max(c["age_s"] for c in sim.connections()["closed"]) < 4.0


def test_subscribe_and_unsubscribe_on_the_live_connection(sim_factory):
    sim = sim_factory(symbols=8, interval=0.1, seed=4)

    async def scenario():
        rest = RestClient(settings_for(sim))
        info = await rest.exchange_info()
        symbols = st.trading_symbols(info)[:8]
        names = [f"{sym.lower()}@miniTicker" for sym in symbols]
        seen = Seen()
        source = StreamSource(settings_for(sim), names[:2], seen.on_frame, seen.on_connected)
        task = await serve(source, seen)
        await source.set_streams(names[1:6])
        await until(lambda: all(seen.events[sym] for sym in symbols[1:6]))
        live = await in_thread(sim.connections)
        assert sorted(live["open"][0]["streams"]) == sorted(names[1:6])
        removed_at = max(seen.events[symbols[0]])
        await asyncio.sleep(0.5)
        await stop(task)
        assert max(seen.events[symbols[0]]) - removed_at < 300  # ms: only frames that were already in flight
        stats = await in_thread(sim.stats)
        assert stats["connections_total"] == 1, "the change did not need a reconnect"

    run(scenario)


def test_whole_market_per_symbol_streams_subscribe_within_the_message_limit(sim_factory):
    """All TRADING symbols of the 2021 capture as per-symbol streams: two connections, most streams added by
    SUBSCRIBE after connecting; the simulator closes with 1008 at more than 5 messages per second."""
    sim = sim_factory(interval=1.0, seed=5)

    async def scenario():
        s = settings_for(sim, stale_timeout_s=5.0)
        info = await RestClient(s).exchange_info()
        names = st.expand(["@miniTicker"], info)
        seen = Seen()
        before = reconnects("1008")
        source = StreamSource(s, names, seen.on_frame, seen.on_connected)
        task = await serve(source, seen)
        await until(lambda: len(seen.events) == len(names), within_s=20)
        status = source.status()
        await stop(task)
        assert reconnects("1008") == before
        assert len(status) == 2 and sum(c["streams"] for c in status) == len(names) == 1262

    run(scenario)


def test_rest_honours_429_and_418_retry_after(sim_factory):
    sim = sim_factory(symbols=3, interval=0.5, seed=6)

    def count(status: str) -> float:
        return metrics.REGISTRY.get_sample_value("binance_ingest_rest_requests_total",
                                                 {"endpoint": TICKER_PRICE, "status": status}) or 0.0

    async def scenario():
        rest = RestClient(settings_for(sim))
        before429, before418 = count("429"), count("418")
        await in_thread(sim.fault, "rest", status=429, retry_after=1)
        started = time.monotonic()
        prices = await rest.ticker_price()
        waited_429 = time.monotonic() - started
        await in_thread(sim.fault, "rest", status=418, retry_after=2)
        started = time.monotonic()
        await rest.ticker_price()
        waited_418 = time.monotonic() - started
        assert prices and all("price" in p for p in prices)
        assert count("429") - before429 == 1 and count("418") - before418 == 1
        assert waited_429 >= 1.0 and waited_418 >= 2.0
        assert rest.budget.used > 0  # taken from the simulator's X-MBX-USED-WEIGHT-1M

    run(scenario)
