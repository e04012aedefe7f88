"""Scoped REST snapshots: per kind only the streamed symbols, at the least request weight."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ingest.binance import snapshot
from ingest.binance.rest import RestError, ticker_24hr_request
from ingest.binance.snapshot import Request


def test_scope_per_kind():
    assert snapshot.scope(["!miniTicker@arr", "btcusdt@ticker"]) == {"miniticker": None,
                                                                     "ticker": frozenset({"BTCUSDT"})}
    assert snapshot.scope(["btcusdt@ticker", "币安人生usdt@ticker", "ethbtc@miniTicker"]) == {
        "ticker": frozenset({"BTCUSDT", "币安人生USDT"}), "miniticker": frozenset({"ETHBTC"})}
    assert snapshot.scope(["btcusdt@miniTicker", "!miniTicker@arr"]) == {"miniticker": None}


def test_plan_uses_the_cheapest_weight_steps():
    # all-market mini tickers: one all-symbol MINI request
    assert snapshot.plan({"miniticker": None}) == [Request(None, True, 80)]
    # 25 symbols: two requests of the 1-20 step (2 + 2) instead of one of the 21-100 step (40)
    names = frozenset(f"S{i:03d}USDT" for i in range(25))
    got = snapshot.plan({"ticker": names})
    assert [(len(r.symbols or ()), r.mini, r.weight) for r in got] == [(20, False, 2), (5, False, 2)]
    assert {s for r in got for s in r.symbols or ()} == names
    # 780 symbols still cost less listed (39 x 2 = 78); 781 cost 80 either way: one all-symbol request
    assert sum(r.weight for r in snapshot.plan({"ticker": frozenset(f"S{i}" for i in range(780))})) == 78
    assert snapshot.plan({"ticker": frozenset(f"S{i}" for i in range(781))}) == [Request(None, False, 80)]


def test_plan_merges_kinds_when_one_full_request_is_cheaper():
    # every mini ticker + BTCUSDT's ticker: one FULL all-symbol request (80) beats MINI all (80) + BTCUSDT (2)
    assert snapshot.plan({"miniticker": None, "ticker": frozenset({"BTCUSDT"})}) == [Request(None, False, 80)]
    # both kinds of the whole market: 80, not 160
    assert snapshot.plan({"miniticker": None, "ticker": None}) == [Request(None, False, 80)]
    # a few symbols of each kind: one list of their union
    got = snapshot.plan({"miniticker": frozenset({"A1", "B1"}), "ticker": frozenset({"B1", "C1"})})
    assert got == [Request(("A1", "B1", "C1"), False, 2)]


def test_request_params_narrow_all_symbol_requests():
    assert ticker_24hr_request(None, mini=True, trading_only=True) == (
        {"symbolStatus": "TRADING", "type": "MINI"}, 80, False)
    assert ticker_24hr_request(["btcusdt"], mini=True, trading_only=True) == (
        {"symbol": "BTCUSDT", "type": "MINI"}, 2, False)  # symbolStatus with one symbol errors on a mismatch
    assert ticker_24hr_request(["币安人生usdt", "BTCUSDT"]) == ({"symbols": '["币安人生USDT","BTCUSDT"]'}, 2, False)


class FakeRest:
    """Answers like Binance from a table of entries (FULL or MINI), records what was asked."""

    def __init__(self, entries: list[Any], fail_on: str | None = None) -> None:
        self.entries = entries
        self.calls: list[tuple[tuple[str, ...] | None, bool, bool]] = []
        self.fail_on = fail_on

    async def ticker_24hr(self, symbols: list[str] | None = None, *, mini: bool = False,
                          trading_only: bool = False) -> list[dict[str, Any]]:
        self.calls.append((tuple(symbols) if symbols is not None else None, mini, trading_only))
        if symbols is not None and self.fail_on in symbols:
            raise RestError("/api/v3/ticker/24hr", 500, "boom")
        rows = [e for e in self.entries if not isinstance(e, dict)
                or ((symbols is None or e["symbol"] in symbols) and (not trading_only or e["status"] == "TRADING"))]
        return [{k: v for k, v in e.items() if k != "status"} if isinstance(e, dict) else e for e in rows]


def entry(symbol: str, status: str = "TRADING") -> dict[str, Any]:
    return {"symbol": symbol, "status": status, "lastPrice": "1.0", "closeTime": 1}


def test_fetch_gives_each_kind_only_its_symbols():
    rest = FakeRest([entry("BTCUSDT"), entry("ETHBTC"), entry("币安人生USDT"), entry("OLDUSDT", "BREAK")])
    by_kind, failed = asyncio.run(snapshot.fetch(rest, ["!miniTicker@arr", "btcusdt@ticker"]))
    assert failed == 0
    assert rest.calls == [(None, False, True)]  # one FULL request of the TRADING symbols
    assert [e["symbol"] for e in by_kind["miniticker"]] == ["BTCUSDT", "ETHBTC", "币安人生USDT"]
    assert [e["symbol"] for e in by_kind["ticker"]] == ["BTCUSDT"]


def test_fetch_keeps_malformed_entries_once_and_survives_a_failed_request():
    names = [f"S{i:02d}USDT" for i in range(30)]
    rest = FakeRest([entry(n) for n in names] + ["garbage"], fail_on="S25USDT")
    by_kind, failed = asyncio.run(snapshot.fetch(rest, [f"{n.lower()}@ticker" for n in names]))
    assert failed == 1  # the second request (S20..S29) failed, the first still restores its 20 symbols
    assert sorted(e["symbol"] for e in by_kind["ticker"] if isinstance(e, dict)) == names[:20]
    assert by_kind["ticker"].count("garbage") == 1  # to the dead-letter topic, not silently dropped


@pytest.mark.parametrize("streams", [["!miniTicker@arr"], ["btcusdt@miniTicker", "ethbtc@miniTicker"]])
def test_mini_ticker_snapshots_ask_for_type_mini(streams):
    rest = FakeRest([entry("BTCUSDT"), entry("ETHBTC")])
    by_kind, _ = asyncio.run(snapshot.fetch(rest, streams))
    assert all(mini for _, mini, _ in rest.calls)
    assert sorted(e["symbol"] for e in by_kind["miniticker"]) == ["BTCUSDT", "ETHBTC"]


def test_restrict_keeps_only_what_the_streams_still_cover():
    by_kind = {"miniticker": [entry("BTCUSDT"), entry("ETHBTC"), "garbage"], "ticker": [entry("BTCUSDT")]}
    assert snapshot.restrict(by_kind, ["ethbtc@miniTicker"]) == {"miniticker": [entry("ETHBTC"), "garbage"]}
    assert snapshot.restrict(by_kind, ["!miniTicker@arr", "btcusdt@ticker"]) == by_kind
    assert snapshot.restrict(by_kind, []) == {}


# ----- symbols that left TRADING recently (issue 17) -----
def test_plan_left_lists_recently_left_symbols_for_all_market_kinds_only():
    left = [f"D{i:02d}USDT" for i in range(25)]
    # mini tickers of the whole market: MINI lists of 20 (2 each), never an all-symbol request
    got = snapshot.plan_left({"miniticker": None}, left)
    assert [(len(r.symbols or ()), r.mini, r.weight) for r in got] == [(20, True, 2), (5, True, 2)]
    assert {s for r in got for s in r.symbols or ()} == set(left)
    # a FULL list when tickers of the whole market are streamed too (a FULL entry serves both kinds)
    assert snapshot.plan_left({"miniticker": None, "ticker": None}, ["OLDUSDT"]) == [
        Request(("OLDUSDT",), False, 2)]
    # nothing when none left, or when no all-market stream is streamed (listed symbols are asked for by name)
    assert snapshot.plan_left({"miniticker": None}, []) == []
    assert snapshot.plan_left({"ticker": frozenset({"BTCUSDT"})}, ["OLDUSDT"]) == []


def test_fetch_of_an_all_market_stream_includes_recently_left_symbols_once():
    rest = FakeRest([entry("BTCUSDT"), entry("ETHBTC"), entry("OLDUSDT", "BREAK"), entry("GONEUSDT", "BREAK")])
    by_kind, failed = asyncio.run(snapshot.fetch(rest, ["!miniTicker@arr", "btcusdt@ticker"],
                                                 left=["OLDUSDT", "GONEUSDT"]))
    assert failed == 0
    assert rest.calls == [(None, False, True), (("GONEUSDT", "OLDUSDT"), True, False)]
    assert sorted(e["symbol"] for e in by_kind["miniticker"]) == ["BTCUSDT", "ETHBTC", "GONEUSDT", "OLDUSDT"]
    assert [e["symbol"] for e in by_kind["ticker"]] == ["BTCUSDT"]  # MINI entries lack ticker fields


def test_fetch_gives_a_symbol_in_two_requests_once_per_kind():
    # BTCUSDT left TRADING but its ticker stream is still listed: asked for by the listed request and by the
    # left one (FULL, because tickers of the whole market are streamed too); each kind gets it once.
    rest = FakeRest([entry("BTCUSDT", "BREAK"), entry("ETHBTC")])
    by_kind, _ = asyncio.run(snapshot.fetch(rest, ["!ticker@arr", "btcusdt@miniTicker"], left=["BTCUSDT"]))
    assert len(rest.calls) == 2
    assert [e["symbol"] for e in by_kind["ticker"]] == ["ETHBTC", "BTCUSDT"]
    assert [e["symbol"] for e in by_kind["miniticker"]] == ["BTCUSDT"]


def test_fetch_without_left_symbols_asks_nothing_more():
    rest = FakeRest([entry("BTCUSDT"), entry("OLDUSDT", "BREAK")])
    by_kind, _ = asyncio.run(snapshot.fetch(rest, ["!miniTicker@arr"]))
    assert rest.calls == [(None, True, True)]
    assert [e["symbol"] for e in by_kind["miniticker"]] == ["BTCUSDT"]


def test_fetch_left_asks_only_for_those_symbols_of_all_market_kinds():
    rest = FakeRest([entry("BTCUSDT"), entry("OLDUSDT", "BREAK")])
    by_kind, _ = asyncio.run(snapshot.fetch_left(rest, ["!miniTicker@arr", "btcusdt@ticker"], ["OLDUSDT"]))
    assert rest.calls == [(("OLDUSDT",), True, False)]
    assert by_kind == {"miniticker": [{"symbol": "OLDUSDT", "lastPrice": "1.0", "closeTime": 1}]}
    rest = FakeRest([entry("OLDUSDT", "BREAK")])
    assert asyncio.run(snapshot.fetch_left(rest, ["btcusdt@ticker"], ["OLDUSDT"])) == ({}, 0)
    assert asyncio.run(snapshot.fetch_left(rest, ["!miniTicker@arr"], [])) == ({"miniticker": []}, 0)
    assert rest.calls == []
