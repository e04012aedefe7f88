"""REST as Binance answers it today: weights and limit (6000/min), symbolStatus=, type=MINI, symbols= forms."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from tests.sim.rawhttp import raw_get
from tests.sim_fixture import EXCHANGE_INFO_EXCERPT

MINI_FIELDS = ["symbol", "openPrice", "highPrice", "lowPrice", "lastPrice", "volume", "quoteVolume", "openTime",
               "closeTime", "firstId", "lastId", "count"]


def weight_of(sim, path: str, params: dict | None = None) -> int:
    """The weight one request costs: the difference of X-MBX-USED-WEIGHT-1M around it."""
    before = int(sim.request("/api/v3/ping")[1]["X-MBX-USED-WEIGHT-1M"])
    status, headers, _ = sim.request(path, params)
    assert status == 200, (path, params)
    return int(headers["X-MBX-USED-WEIGHT-1M"]) - before


def test_current_weights_and_limit(sim_factory) -> None:
    sim = sim_factory(symbols=150, interval=5, seed=1, rest_weight_window=3600)
    names = [row["symbol"] for row in sim.request("/api/v3/ticker/price")[2]][:150]

    def symbols(n: int) -> dict:
        return {"symbols": json.dumps(names[:n], separators=(",", ":"))}

    weights = {
        "exchangeInfo": weight_of(sim, "/api/v3/exchangeInfo"),
        "24hr one": weight_of(sim, "/api/v3/ticker/24hr", {"symbol": names[0]}),
        "24hr 20": weight_of(sim, "/api/v3/ticker/24hr", symbols(20)),
        "24hr 21": weight_of(sim, "/api/v3/ticker/24hr", symbols(21)),
        "24hr 100": weight_of(sim, "/api/v3/ticker/24hr", symbols(100)),
        "24hr 101": weight_of(sim, "/api/v3/ticker/24hr", symbols(101)),
        "24hr all": weight_of(sim, "/api/v3/ticker/24hr"),
        "price one": weight_of(sim, "/api/v3/ticker/price", {"symbol": names[0]}),
        "price list": weight_of(sim, "/api/v3/ticker/price", symbols(3)),
        "price all": weight_of(sim, "/api/v3/ticker/price"),
    }
    assert weights == {
        "exchangeInfo": 20, "24hr one": 2, "24hr 20": 2, "24hr 21": 40, "24hr 100": 40, "24hr 101": 80,
        "24hr all": 80, "price one": 2, "price list": 4, "price all": 4}
    used = int(sim.request("/api/v3/ping")[1]["X-MBX-USED-WEIGHT-1M"])
    for _ in range((6000 - used) // 80):  # fill the minute's 6000 with full ticker/24hr requests
        assert sim.request("/api/v3/ticker/24hr")[0] == 200
    used = int(sim.request("/api/v3/ping")[1]["X-MBX-USED-WEIGHT-1M"])
    assert 6000 - 80 < used <= 6000
    assert sim.request("/api/v3/ticker/24hr")[0] == 429


def test_symbol_status_filters_ticker_answers(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=5, seed=3)
    sim.delisting("ETHUSDT", status="HALT")
    sim.delisting("BNBBTC", status="END_OF_DAY")
    statuses = {s["symbol"]: s["status"] for s in sim.request("/api/v3/exchangeInfo")[2]["symbols"]}
    assert statuses["ETHUSDT"] == "HALT" and statuses["BNBBTC"] == "END_OF_DAY"
    for path in ("/api/v3/ticker/24hr", "/api/v3/ticker/price"):
        trading = sim.request(path, {"symbolStatus": "TRADING"})[2]
        assert sorted(r["symbol"] for r in trading) == sorted(s for s, st in statuses.items() if st == "TRADING")
        halted = sim.request(path, {"symbolStatus": "HALT", "symbols": '["ETHUSDT","BTCUSDT"]'})[2]
        assert [r["symbol"] for r in halted] == ["ETHUSDT"]
        assert [r["symbol"] for r in sim.request(path, {"symbolStatus": "BREAK"})[2]] == ["BCCBTC", "HSRBTC"]
        assert sim.request(path, {"symbolStatus": "CANCEL_ONLY"})[2] == []
        status, _, body = sim.request(path, {"symbol": "ETHUSDT", "symbolStatus": "TRADING"})
        assert status == 400 and body["code"] == -1220
        assert sim.request(path, {"symbol": "ETHUSDT", "symbolStatus": "HALT"})[2]["symbol"] == "ETHUSDT"
        assert sim.request(path, {"symbolStatus": "SLEEPING"})[0] == 400


def test_type_mini_answers_the_mini_fields(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=5, seed=4)
    full = sim.request("/api/v3/ticker/24hr", {"symbol": "BTCUSDT"})[2]
    mini = sim.request("/api/v3/ticker/24hr", {"symbol": "BTCUSDT", "type": "MINI"})[2]
    assert list(mini) == MINI_FIELDS and mini["closeTime"] - mini["openTime"] == 86_400_000
    same = [k for k in MINI_FIELDS if not k.endswith("Time")]  # no tick yet: the times are the request's
    assert {k: mini[k] for k in same} == {k: full[k] for k in same}
    every = sim.request("/api/v3/ticker/24hr", {"type": "MINI", "symbolStatus": "TRADING"})[2]
    assert len(every) == 7 and all(list(row) == MINI_FIELDS for row in every)
    assert list(sim.request("/api/v3/ticker/24hr", {"symbol": "BTCUSDT", "type": "FULL"})[2]) == list(full)
    assert sim.request("/api/v3/ticker/24hr", {"type": "TINY"})[0] == 400


@pytest.mark.parametrize("encoded", [True, False])
def test_symbols_json_array_percent_encoded_or_not(sim_factory, encoded: bool) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=5, seed=5)
    array = '["BTCUSDT","ETHBTC"]'
    query = "symbols=" + (urllib.parse.quote(array) if encoded else array)
    for path in ("/api/v3/ticker/24hr", "/api/v3/ticker/price", "/api/v3/exchangeInfo"):
        status, body = raw_get(sim.http_url, f"{path}?{query}")
        rows = body["symbols"] if path.endswith("exchangeInfo") else body
        assert status == 200 and [r["symbol"] for r in rows] == ["BTCUSDT", "ETHBTC"], (path, body)
