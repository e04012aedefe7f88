"""Non-ASCII symbols (Binance since 2025-12): listing, exchangeInfo, array and per-symbol streams, REST.

Each form is tried percent-encoded and raw (UTF-8 bytes on the request line or in SUBSCRIBE params), as
Binance says stream names may be URL-encoded and clients differ in what they send."""

from __future__ import annotations

import asyncio
import json
import urllib.parse

import pytest
import websockets

from tests.sim.rawhttp import raw_get, raw_ws_first_frame
from tests.sim.wsclient import recv_json, run
from tests.sim_fixture import EXCHANGE_INFO_EXCERPT

SYMBOL, BASE = "币安人生USDT", "币安人生"
STREAM = "币安人生usdt@ticker"


def list_symbol(sim, encoded: bool) -> None:
    if encoded:
        sim.listing(SYMBOL, BASE, "USDT")
    else:
        status, body = raw_get(sim.http_url, f"/_sim/listing?symbol={SYMBOL}&base={BASE}&quote=USDT")
        assert status == 200 and body["listed"]["symbol"] == SYMBOL


@pytest.mark.parametrize("encoded", [True, False])
def test_listing_shows_in_exchange_info_rest_and_the_array_stream(sim_factory, encoded: bool) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.1, seed=8)
    list_symbol(sim, encoded)
    entry = next(s for s in sim.request("/api/v3/exchangeInfo")[2]["symbols"] if s["symbol"] == SYMBOL)
    assert entry["baseAsset"] == BASE and entry["quoteAsset"] == "USDT" and entry["status"] == "TRADING"

    async def scenario() -> dict:
        async with websockets.connect(sim.ws_url + "/ws/!miniTicker@arr") as ws:
            for _ in range(20):
                found = [t for t in await recv_json(ws) if t["s"] == SYMBOL]
                if found:
                    return found[0]
        raise AssertionError("the new symbol never ticked in !miniTicker@arr")

    ticker = run(scenario())
    rest = sim.request("/api/v3/ticker/24hr", {"symbol": SYMBOL})[2]
    assert rest["symbol"] == SYMBOL
    status, raw = raw_get(sim.http_url, f"/api/v3/ticker/24hr?symbol={SYMBOL}")
    assert status == 200 and raw["symbol"] == SYMBOL
    status, listed = raw_get(sim.http_url, f'/api/v3/ticker/price?symbols=["{SYMBOL}","BTCUSDT"]')
    assert status == 200 and [r["symbol"] for r in listed] == [SYMBOL, "BTCUSDT"]
    assert ticker["e"] == "24hrMiniTicker"
    assert any(r["symbol"] == SYMBOL for r in sim.sent_records() if "fault" not in r)


@pytest.mark.parametrize("form", ["url-encoded", "url-raw"])
def test_symbol_stream_in_the_url(sim_factory, form: str) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.1, seed=9)
    list_symbol(sim, encoded=True)
    if form == "url-encoded":  # websockets percent-encodes the non-ASCII part of the URL itself

        async def scenario() -> dict:
            async with websockets.connect(sim.ws_url + "/stream?streams=" + urllib.parse.quote(STREAM)) as ws:
                return await recv_json(ws)

        frame = run(scenario())
        assert frame["stream"] == STREAM and frame["data"]["s"] == SYMBOL and frame["data"]["e"] == "24hrTicker"
    else:
        status, text = raw_ws_first_frame(sim.http_url, "/ws/" + STREAM)
        assert status == 101 and json.loads(text)["s"] == SYMBOL


@pytest.mark.parametrize("encoded", [True, False])
def test_subscribe_with_the_stream_name_percent_encoded_or_not(sim_factory, encoded: bool) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.1, seed=10)
    list_symbol(sim, encoded=False)
    name = urllib.parse.quote(STREAM) if encoded else STREAM

    async def scenario() -> tuple[dict, list]:
        async with websockets.connect(sim.ws_url + "/stream") as ws:
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": [name], "id": 1}, ensure_ascii=False))
            assert await recv_json(ws) == {"result": None, "id": 1}
            frame = await recv_json(ws)
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
            while (reply := await recv_json(ws)).get("id") != 2:
                pass
            return frame, reply["result"]

    frame, listed = run(scenario())
    assert frame["stream"] == STREAM and frame["data"]["s"] == SYMBOL
    assert listed == [STREAM]  # the decoded name


def test_python_and_binance_lower_casing_are_both_served(sim_factory) -> None:
    """'ÄBCUSDT': Binance lower-cases the ASCII part only ('Äbcusdt'), Python's str.lower() all ('äbcusdt')."""
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.1, seed=11)
    sim.listing("ÄBCUSDT", "ÄBC", "USDT")
    names = ["äbcusdt@miniTicker", "Äbcusdt@miniTicker"]

    async def scenario() -> set:
        async with websockets.connect(sim.ws_url + "/stream?streams=" + "/".join(map(urllib.parse.quote, names))) as ws:
            seen = set()
            async with asyncio.timeout(10):
                while len(seen) < 2:
                    frame = await recv_json(ws)
                    assert frame["data"]["s"] == "ÄBCUSDT"
                    seen.add(frame["stream"])
            return seen

    assert run(scenario()) == set(names)  # each subscriber gets the name it subscribed with


def test_listing_statuses_are_binances(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=5)
    for status in ("TRADING", "END_OF_DAY", "HALT", "BREAK", "CANCEL_ONLY"):
        assert sim.delisting("ETHBTC", status=status)["status"] == status
    assert sim.listing("NEWUSDT", "NEW", "USDT", status="HALT")["listed"]["status"] == "HALT"
    assert sim.request("/_sim/delisting", {"symbol": "ETHBTC", "status": "PAUSED"}, method="POST")[0] == 400
