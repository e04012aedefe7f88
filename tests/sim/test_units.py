"""Unit tests of the simulator's pure parts: decimal rendering, universe scaling, replay lines, weights."""

from __future__ import annotations

import itertools
import json
import random
import re
import time
from decimal import Decimal
from pathlib import Path

import pytest

import ingest
from ingest.sim import replay
from ingest.sim.faults import FaultError, malformed_payload, parse_cli_fault
from ingest.sim.market import (
    DAY_MS,
    Market,
    SymbolState,
    fmt,
    load_seed_prices,
    percent,
    render_array,
    render_bodies,
)
from ingest.sim.rest import WeightLimiter
from ingest.sim.universe import Universe
from tests.sim_fixture import CAPTURES, EXCHANGE_INFO_EXCERPT


@pytest.mark.parametrize(("units", "precision", "text"), [
    (150000, 8, "0.00150000"), (5, 8, "0.00000005"), (0, 8, "0.00000000"), (-59000, 8, "-0.00059000"),
    (6901001, 2, "69010.01"), (42, 0, "42"),
])
def test_fmt(units: int, precision: int, text: str) -> None:
    assert fmt(units, precision) == text


def test_percent_truncates_like_binance() -> None:
    assert percent(-59, 5751) == "-1.025"
    assert percent(0, 5751) == "0.000"
    assert percent(1, 10**9) == "0.000"  # no "-0.000"
    assert percent(-1, 10**9) == "0.000"


def test_random_walk_respects_tick_and_precision() -> None:
    universe = Universe.load(EXCHANGE_INFO_EXCERPT)
    market = Market(universe, seed=9)
    for _ in range(200):
        market.tick(3)
    for state in market.states.values():
        spec = state.spec
        tick = Decimal(next(f["tickSize"] for f in spec.entry["filters"] if f["filterType"] == "PRICE_FILTER"))
        ticker = json.loads(state.ticker_json())
        for key in ("c", "o", "h", "l", "b", "a"):
            assert Decimal(ticker[key]) % tick == 0 and Decimal(ticker[key]) > 0
            assert len(ticker[key].split(".")[1]) == spec.price_precision


def test_stamped_after_rendering_is_the_same_json_with_a_later_event_time() -> None:
    market = Market(Universe.load(EXCHANGE_INFO_EXCERPT), seed=3)
    changed = market.tick(100, stamp=False)
    assert changed and all(state.E == 0 for state in changed)  # not stamped yet
    bodies = {kind: render_bodies(kind, changed) for kind in ("ticker", "miniticker")}
    before_ms = int(time.time() * 1000)
    event_time = market.stamp(changed)
    assert event_time >= before_ms and all(event_time == state.E for state in changed)
    assert render_array("ticker", bodies["ticker"], event_time) == [s.ticker_json() for s in changed]
    assert render_array("miniticker", bodies["miniticker"], event_time) == [s.mini_json() for s in changed]
    ticker = json.loads(changed[0].ticker_json())
    assert list(ticker) == list("eEspPwxcQbBaAohlvqOCFLn")  # Binance's field order
    assert (ticker["E"], ticker["C"], ticker["O"]) == (event_time, event_time, event_time - DAY_MS)
    assert list(json.loads(changed[0].mini_json())) == list("eEscohlvq")
    # the next tick's event time is later: stamping does not reuse or run ahead
    assert market.stamp(market.tick(5, stamp=False)) > event_time


def test_non_trading_symbols_never_tick() -> None:
    market = Market(Universe.load(EXCHANGE_INFO_EXCERPT), seed=1)
    ticked = {s.name for _ in range(50) for s in market.tick(100)}
    assert ticked == {s.symbol for s in market.universe.trading()}
    assert "BCCBTC" not in ticked and market.states["BCCBTC"].E == 0


def test_universe_scaling_keeps_names_unique() -> None:
    small = Universe.load(EXCHANGE_INFO_EXCERPT, symbols=2)
    assert [s.symbol for s in small.trading()] == ["ETHBTC", "BNBBTC"]
    assert {"BCCBTC", "HSRBTC"} <= small.specs.keys()
    big = Universe.load(EXCHANGE_INFO_EXCERPT, symbols=30)
    names = [s.symbol for s in big.trading()]
    assert len(names) == len(set(names)) == 30 and "SIM1BTCUSDT" in names
    recorded = {s.symbol for s in Universe.load(EXCHANGE_INFO_EXCERPT).trading()}
    # every synthetic clone is labelled as one: SIM<n><BASE><QUOTE>; every other name is a recorded one
    assert all(n in recorded or re.fullmatch(r"SIM\d+[A-Z0-9]+", n) for n in names)
    assert len([n for n in names if n.startswith("SIM")]) == 30 - len(recorded)


def test_default_exchange_info_is_package_data_with_real_names() -> None:
    """`ingest sim` without --exchange-info serves the packaged excerpt: real names, no clones up to 250."""
    from ingest.sim.settings import DEFAULT_EXCHANGE_INFO

    assert DEFAULT_EXCHANGE_INFO.is_relative_to(Path(ingest.__file__).parent)
    names = [s.symbol for s in Universe.load(DEFAULT_EXCHANGE_INFO, symbols=200).trading()]
    assert len(names) == 200 and {"BTCUSDT", "ETHUSDT", "BNBUSDT"} <= set(names)
    assert not any(n.startswith("SIM") for n in names)


def test_event_times_strictly_increase() -> None:
    market = Market(Universe.load(EXCHANGE_INFO_EXCERPT), seed=1)
    times = [market.next_event_time() for _ in range(1000)]
    assert all(b > a for a, b in itertools.pairwise(times))


def test_seed_prices_from_the_recorded_ticker24hr() -> None:
    path = CAPTURES / "ticker24hr.json"
    if not path.exists():
        pytest.skip(f"{path} not found: the shared captures are not next to the repo")
    seeds = load_seed_prices(path)
    state = SymbolState(Universe.load(EXCHANGE_INFO_EXCERPT).specs["BTCUSDT"], random.Random(1), seeds["BTCUSDT"])
    assert fmt(state.last, state.pp) == "69010.01000000"


def test_parse_replay_lines() -> None:
    raw = '[{"e":"24hrMiniTicker","E":5,"s":"BTCUSDT","c":"1.0"}]'
    frame = replay.parse_line(raw)
    assert (frame.stream, frame.raw, frame.event_time) == ("!miniTicker@arr", raw, 5)
    assert frame.combined == '{"stream":"!miniTicker@arr","data":' + raw + "}"
    envelope = '{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"1","B":"2","a":"3","A":"4"}}'
    frame = replay.parse_line(envelope)
    assert frame.combined == envelope and frame.raw == envelope[len('{"stream":"btcusdt@bookTicker","data":'):-1]
    wrapped = json.dumps({"stream": "x@ticker", "frame": '{"e": "24hrTicker", "E": 7}'})
    frame = replay.parse_line(wrapped)
    assert (frame.stream, frame.raw, frame.event_time) == ("x@ticker", '{"e": "24hrTicker", "E": 7}', 7)
    broken = replay.parse_line('{"e":"24hrTicker",')
    assert broken.stream is None and broken.raw == '{"e":"24hrTicker",'


def test_weight_limiter_429_then_418() -> None:
    limiter = WeightLimiter(limit=10, window_s=3600, ban_after=1, ban_s=60)
    assert limiter.charge("a", 10)[0] == 200
    assert limiter.charge("b", 10)[0] == 200  # per address
    assert limiter.charge("a", 1)[:2] == (429, 10)
    status, _, retry_after = limiter.charge("a", 1)
    assert status == 418 and retry_after == 60


def test_malformed_payloads_and_fault_specs() -> None:
    ticker = '{"e":"24hrMiniTicker","E":1,"s":"BTCUSDT","c":"1.00","o":"1.00","h":"1.00","l":"1.00","v":"1","q":"1"}'
    with pytest.raises(json.JSONDecodeError):
        json.loads(malformed_payload("invalid_json", ticker, True))
    invalid = malformed_payload("invalid_utf8", ticker, False)
    assert isinstance(invalid, bytes)
    with pytest.raises(UnicodeDecodeError):
        invalid.decode("utf-8")
    assert parse_cli_fault("close:code=1006,every=30") == {"type": "close", "code": 1006, "every": 30}
    with pytest.raises(FaultError):
        parse_cli_fault("explode:at=1")
