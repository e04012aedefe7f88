"""Streams: URL forms, Binance's field names and types, precision, E ordering, what ticks and what not."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest
import websockets

from tests.sim.wsclient import recv_json, run
from tests.sim_fixture import EXCHANGE_INFO_EXCERPT, SimProcess, require_captures

MINI_FIELDS = ["e", "E", "s", "c", "o", "h", "l", "v", "q"]
TICKER_FIELDS = ["e", "E", "s", "p", "P", "w", "x", "c", "Q", "b", "B", "a", "A", "o", "h", "l", "v", "q",
                 "O", "C", "F", "L", "n"]


def specs_by_symbol(sim: SimProcess) -> dict[str, dict[str, Any]]:
    _, _, info = sim.request("/api/v3/exchangeInfo")
    return {s["symbol"]: s for s in info["symbols"]}


def decimals(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text else 0


def tick_size(spec: dict[str, Any]) -> Decimal:
    return Decimal(next(f["tickSize"] for f in spec["filters"] if f["filterType"] == "PRICE_FILTER"))


def check_ticker(ticker: dict[str, Any], spec: dict[str, Any], full: bool) -> None:
    assert list(ticker) == (TICKER_FIELDS if full else MINI_FIELDS)
    assert ticker["e"] == ("24hrTicker" if full else "24hrMiniTicker")
    assert isinstance(ticker["E"], int) and ticker["E"] > 1_600_000_000_000
    for key in ("c", "o", "h", "l"):
        assert isinstance(ticker[key], str) and decimals(ticker[key]) == spec["quotePrecision"]
        assert Decimal(ticker[key]) % tick_size(spec) == 0, (key, ticker[key])
    assert decimals(ticker["v"]) == spec["baseAssetPrecision"]
    assert decimals(ticker["q"]) == spec["quoteAssetPrecision"]
    assert Decimal(ticker["l"]) <= Decimal(ticker["c"]) <= Decimal(ticker["h"])
    if full:
        for key in ("O", "C", "F", "L", "n"):
            assert isinstance(ticker[key], int)
        assert ticker["n"] == ticker["L"] - ticker["F"] + 1
        assert ticker["C"] == ticker["E"] and ticker["O"] == ticker["C"] - 86_400_000
        assert Decimal(ticker["p"]) == Decimal(ticker["c"]) - Decimal(ticker["o"])
        assert Decimal(ticker["b"]) <= Decimal(ticker["c"]) <= Decimal(ticker["a"])


def test_raw_and_combined_array_streams_with_exact_fields(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.2, seed=1, serve_retired_streams=True)
    specs = specs_by_symbol(sim)

    async def scenario() -> tuple[list, list, dict]:
        async with websockets.connect(sim.ws_url + "/ws/!miniTicker@arr") as raw, \
                websockets.connect(sim.ws_url + "/ws/!ticker@arr") as raw_full, \
                websockets.connect(sim.ws_url + "/stream?streams=!miniTicker@arr/!ticker@arr") as combined:
            return await recv_json(raw), await recv_json(raw_full), await recv_json(combined)

    mini, full, wrapped = run(scenario())
    for ticker in mini:
        check_ticker(ticker, specs[ticker["s"]], full=False)
    for ticker in full:
        check_ticker(ticker, specs[ticker["s"]], full=True)
    assert list(wrapped) == ["stream", "data"]
    assert wrapped["stream"] in ("!miniTicker@arr", "!ticker@arr")
    # Only TRADING symbols tick: the two BREAK symbols of the excerpt never appear.
    trading = {s for s, spec in specs.items() if spec["status"] == "TRADING"}
    assert {t["s"] for t in mini} == trading
    assert "BCCBTC" not in trading and "1INCHUSDT" in trading


@pytest.mark.parametrize("how", ["url", "subscribe"])
def test_retired_ticker_arr_is_accepted_but_never_served(sim_factory, how: str) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.1, seed=2)
    path = "/stream?streams=!ticker@arr/!miniTicker@arr" if how == "url" else "/stream"

    async def scenario() -> tuple[list, list]:
        async with websockets.connect(sim.ws_url + path) as ws:
            if how == "subscribe":
                await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["!ticker@arr", "!miniTicker@arr"],
                                          "id": 1}))
                assert await recv_json(ws) == {"result": None, "id": 1}
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
            listed = None
            streams = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 2.0  # 20 intervals
            while loop.time() < deadline:
                frame = await recv_json(ws)
                if frame.get("id") == 2:
                    listed = frame["result"]
                else:
                    streams.append(frame["stream"])
            return listed, streams

    listed, streams = run(scenario())
    assert sorted(listed) == ["!miniTicker@arr", "!ticker@arr"]  # the subscription succeeded
    assert len(streams) >= 10 and set(streams) == {"!miniTicker@arr"}  # ... and nothing came on it
    stats = sim.stats()
    assert "ticker" not in stats["tickers_sent"] and stats["retired_subscriptions"] == {"!ticker@arr": 1}


def test_serve_retired_streams_serves_ticker_arr(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.1, seed=2, serve_retired_streams=True)

    async def scenario() -> list:
        async with websockets.connect(sim.ws_url + "/ws/!ticker@arr") as ws:
            return await recv_json(ws)

    assert {t["e"] for t in run(scenario())} == {"24hrTicker"}
    assert sim.stats()["retired_subscriptions"] == {}


def test_symbol_streams_raw_multi_path_and_e_strictly_increasing(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.05, seed=2)

    async def scenario() -> list[dict]:
        async with websockets.connect(sim.ws_url + "/ws/btcusdt@miniTicker/1inchusdt@ticker") as ws:
            return [await recv_json(ws) for _ in range(20)]

    frames = run(scenario())
    kinds = {(f["s"], f["e"]) for f in frames}
    assert kinds == {("BTCUSDT", "24hrMiniTicker"), ("1INCHUSDT", "24hrTicker")}
    for key in kinds:
        times = [f["E"] for f in frames if (f["s"], f["e"]) == key]
        assert times == sorted(times) and len(set(times)) == len(times), times
    ids = [(f["F"], f["L"]) for f in frames if f["e"] == "24hrTicker"]
    assert all(first == ids[0][0] for first, _ in ids)
    assert [last for _, last in ids] == sorted(last for _, last in ids)


def test_arrays_carry_only_changed_symbols_at_the_given_rate(sim_factory) -> None:
    sim = sim_factory(exchange_info=require_captures(), rate=100, interval=0.1, seed=3)

    async def scenario() -> list[list]:
        async with websockets.connect(sim.ws_url + "/ws/!miniTicker@arr") as ws:
            return [await recv_json(ws) for _ in range(10)]

    arrays = run(scenario())
    sizes = [len(a) for a in arrays]
    assert all(5 <= n <= 15 for n in sizes), sizes  # 100 tickers/s in 0.1 s arrays, out of 1,262 symbols
    assert all(len({t["s"] for t in a}) == len(a) for a in arrays)


def test_full_2021_capture_serves_its_1262_trading_symbols(sim_factory) -> None:
    sim = sim_factory(exchange_info=require_captures(), interval=0.5, seed=4)
    _, _, info = sim.request("/api/v3/exchangeInfo")
    statuses = [s["status"] for s in info["symbols"]]
    assert len(statuses) == 1695 and statuses.count("TRADING") == 1262

    async def scenario() -> list:
        async with websockets.connect(sim.ws_url + "/ws/!miniTicker@arr") as ws:
            return await recv_json(ws)

    array = run(scenario())
    trading = {s["symbol"] for s in info["symbols"] if s["status"] == "TRADING"}
    assert len(array) == 1262 and {t["s"] for t in array} == trading


def test_symbols_flag_scales_past_the_recorded_universe(sim_factory) -> None:
    sim = sim_factory(exchange_info=require_captures(), symbols=3000, rate=3000, interval=1.0, seed=5)
    _, _, info = sim.request("/api/v3/exchangeInfo")
    assert sum(1 for s in info["symbols"] if s["status"] == "TRADING") == 3000

    async def scenario() -> list:
        async with websockets.connect(sim.ws_url + "/ws/!miniTicker@arr") as ws:
            await recv_json(ws)  # the first array may cover a partial second
            return await recv_json(ws)

    array = run(scenario())
    assert 2500 <= len(array) <= 3000


def test_same_seed_same_prices(sim_factory) -> None:
    # A 60 s interval means no tick happens during the test: REST shows the seeded starting state.
    sims = [sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=60, seed=seed, seed_prices="none")
            for seed in (77, 77, 78)]
    prices = [[(r["symbol"], r["lastPrice"], r["volume"], r["lastId"]) for r in s.request("/api/v3/ticker/24hr")[2]]
              for s in sims]
    assert prices[0] == prices[1] != prices[2]


def test_rest_agrees_with_the_stream(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=3, seed=6)

    async def scenario() -> tuple[dict, dict, list, dict]:
        async with websockets.connect(sim.ws_url + "/ws/btcusdt@ticker") as ws:
            ticker = await recv_json(ws, wait=10)
            one = sim.request("/api/v3/ticker/24hr", {"symbol": "BTCUSDT"})[2]
            every = sim.request("/api/v3/ticker/24hr")[2]
            price = sim.request("/api/v3/ticker/price", {"symbol": "BTCUSDT"})[2]
            return ticker, one, every, price

    ticker, one, every, price = run(scenario())
    names = {"p": "priceChange", "P": "priceChangePercent", "w": "weightedAvgPrice", "x": "prevClosePrice",
             "c": "lastPrice", "Q": "lastQty", "b": "bidPrice", "B": "bidQty", "a": "askPrice", "A": "askQty",
             "o": "openPrice", "h": "highPrice", "l": "lowPrice", "v": "volume", "q": "quoteVolume",
             "O": "openTime", "C": "closeTime", "F": "firstId", "L": "lastId", "n": "count"}
    assert {rest: ticker[short] for short, rest in names.items()} == {k: one[k] for k in names.values()}
    assert one["symbol"] == "BTCUSDT" and one in every
    assert len(every) == 9  # every symbol of the excerpt, BREAK ones included
    assert price == {"symbol": "BTCUSDT", "price": ticker["c"]}
    status, _, body = sim.request("/api/v3/ticker/24hr", {"symbol": "NOPEUSDT"})
    assert status == 400 and body["code"] == -1121


@pytest.mark.parametrize("combined", [False, True])
def test_live_subscribe_unsubscribe_list(sim_factory, combined: bool) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.1, seed=7)
    url = sim.ws_url + ("/stream" if combined else "/ws")

    async def scenario() -> None:
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["ethbtc@miniTicker"], "id": 1}))
            assert await recv_json(ws) == {"result": None, "id": 1}
            frame = await recv_json(ws)
            data = frame["data"] if combined else frame
            if combined:
                assert frame["stream"] == "ethbtc@miniTicker"
            assert data["s"] == "ETHBTC"
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
            while (reply := await recv_json(ws)).get("id") != 2:
                pass
            assert reply == {"result": ["ethbtc@miniTicker"], "id": 2}
            await ws.send(json.dumps({"method": "UNSUBSCRIBE", "params": ["ethbtc@miniTicker"], "id": 3}))
            while (reply := await recv_json(ws)).get("id") != 3:
                pass
            assert reply == {"result": None, "id": 3}
            await ws.send(json.dumps({"method": "NOPE", "id": 4}))
            assert (await recv_json(ws))["code"] == 2  # nothing else is sent any more: the next frame is this
            await ws.send("{not json")
            assert (await recv_json(ws))["code"] == 3

    run(scenario())
