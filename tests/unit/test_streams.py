"""Stream names, pattern expansion, URLs, splitting over connections, and the backoff they reconnect with."""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path

import pytest

from ingest.backoff import Backoff
from ingest.binance import streams as st
from ingest.config import ConfigError

CAPTURES = Path(__file__).resolve().parents[3] / "shared" / "data" / "binance-captures"
EXCHANGE_INFO_2023 = CAPTURES / "exchangeInfo-2023-04-10.json"


def info(*entries: tuple[str, str, str]) -> dict:
    return {"symbols": [{"symbol": s, "status": status, "quoteAsset": q} for s, status, q in entries]}


# ---- names --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "canonical"), [
    ("!miniTicker@arr", "!miniTicker@arr"),
    ("!ticker@arr", "!ticker@arr"),
    ("BTCUSDT@miniTicker", "btcusdt@miniTicker"),
    (" ethbtc@ticker ", "ethbtc@ticker"),
    ("1INCHUSDT@ticker", "1inchusdt@ticker"),
])
def test_normalize_accepts_ticker_streams(raw, canonical):
    assert st.normalize(raw) == canonical


@pytest.mark.parametrize("bad", ["!bookTicker", "btcusdt@depth", "btcusdt@miniticker", "@ticker", "btc-usdt@ticker",
                                 "", "btcusdt", "!miniTicker@ARR"])
def test_normalize_rejects_everything_else(bad):
    with pytest.raises(ConfigError, match="unsupported stream"):
        st.normalize(bad)


def test_kind_interval_and_stale_deadline():
    assert st.kind("!miniTicker@arr") == "miniticker"
    assert st.kind("!ticker@arr") == "ticker"
    assert st.kind("btcusdt@ticker") == "ticker"
    assert st.kind("btcusdt@miniTicker") == "miniticker"
    assert st.push_interval_s("btcusdt@ticker") == 1.0
    assert st.stale_deadline_s(["!miniTicker@arr"]) == 10.0  # 5 x 1 s, but at least 10 s
    assert st.stale_deadline_s(["!miniTicker@arr"], 3.0) == 3.0
    with pytest.raises(ValueError, match="not a ticker stream"):
        st.kind("btcusdt@depth")


def test_metric_labels_are_bounded():
    assert st.metric_label("!ticker@arr") == "!ticker@arr"
    assert st.metric_label("btcusdt@ticker") == "@ticker"
    assert st.metric_label("ethbtc@miniTicker") == "@miniTicker"


# ---- expansion ----------------------------------------------------------------------------------------

def test_patterns_expand_to_trading_symbols_narrowed_by_quote_asset():
    ex = info(("BTCUSDT", "TRADING", "USDT"), ("ETHBTC", "TRADING", "BTC"), ("OLDUSDT", "BREAK", "USDT"))
    assert st.expand(["@ticker"], ex) == ["btcusdt@ticker", "ethbtc@ticker"]
    assert st.expand(["@miniTicker"], ex, ["usdt"]) == ["btcusdt@miniTicker"]
    # duplicates collapse, order is kept, explicit streams pass through
    assert st.expand(["BTCUSDT@ticker", "@ticker", "!miniTicker@arr"], ex) == [
        "btcusdt@ticker", "ethbtc@ticker", "!miniTicker@arr"]
    assert st.needs_exchange_info(["!miniTicker@arr", "@ticker"])
    assert not st.needs_exchange_info(["!miniTicker@arr", "btcusdt@ticker"])
    with pytest.raises(ConfigError, match="needs exchangeInfo"):
        st.expand(["@ticker"])


def test_retired_ticker_arr_is_served_per_trading_symbol_unless_literal():
    ex = info(("BTCUSDT", "TRADING", "USDT"), ("ETHBTC", "TRADING", "BTC"), ("OLDUSDT", "BREAK", "USDT"))
    # the whole market, not narrowed by --quote-assets (which narrows the explicit patterns only)
    assert st.expand(["!ticker@arr", "@miniTicker"], ex, ["USDT"]) == [
        "btcusdt@ticker", "ethbtc@ticker", "btcusdt@miniTicker"]
    assert st.expand(["!ticker@arr", "!miniTicker@arr"], ex, literal_retired=True) == ["!ticker@arr", "!miniTicker@arr"]
    assert st.needs_exchange_info(["!ticker@arr"])
    assert not st.needs_exchange_info(["!ticker@arr"], literal_retired=True)
    with pytest.raises(ConfigError, match="needs exchangeInfo"):
        st.expand(["!ticker@arr"])
    assert st.expand(["!ticker@arr", "btcusdt@ticker"], ex) == ["btcusdt@ticker", "ethbtc@ticker"]  # no duplicate


def test_non_ascii_symbols_are_stream_names_and_unusable_ones_are_skipped():
    ex = info(("币安人生USDT", "TRADING", "USDT"), ("BTCUSDT", "TRADING", "USDT"), ("BAD SYM", "TRADING", "USDT"),
              ("A/B", "TRADING", "USDT"), ("🚀USDT", "TRADING", "USDT"), ("币安人生BTC", "TRADING", "BTC"))
    ex["symbols"] += [{"status": "TRADING", "quoteAsset": "USDT"}, "garbage", {"symbol": 7, "status": "TRADING"}]
    skipped: list[str] = []
    assert st.expand(["@ticker"], ex, ["USDT"], skipped=skipped) == ["币安人生usdt@ticker", "btcusdt@ticker"]
    assert skipped == ["BAD SYM", "A/B", "🚀USDT"]
    assert st.expand(["@miniTicker"], ex) == ["币安人生usdt@miniTicker", "btcusdt@miniTicker", "币安人生btc@miniTicker"]
    assert st.normalize("币安人生USDT@ticker") == "币安人生usdt@ticker"
    assert st.symbol("币安人生usdt@ticker") == "币安人生USDT"
    assert st.metric_label("币安人生usdt@ticker") == "@ticker"
    for bad in ("a b@ticker", "a%20b@ticker", "a/b@ticker", "🚀usdt@ticker"):
        with pytest.raises(ConfigError, match="unsupported stream"):
            st.normalize(bad)


def test_frame_key_undoes_percent_encoding_and_case():
    assert st.frame_key("%E5%B8%81%E5%AE%89%E4%BA%BA%E7%94%9Fusdt@ticker") == "币安人生usdt@ticker"
    assert st.frame_key("币安人生usdt@miniTicker") == "币安人生usdt@miniticker"
    assert st.frame_key("BTCUSDT@ticker") == "btcusdt@ticker"


@pytest.mark.skipif(not EXCHANGE_INFO_2023.exists(), reason=f"{CAPTURES} not present")
def test_expansion_of_a_real_exchange_info():
    ex = json.loads(EXCHANGE_INFO_2023.read_text())
    trading = [s for s in ex["symbols"] if s["status"] == "TRADING"]
    usdt = [s for s in trading if s["quoteAsset"] == "USDT"]
    expanded = st.expand(["@miniTicker"], ex)
    assert len(expanded) == len(trading) == 1405
    assert len(st.expand(["@ticker"], ex, ["USDT"])) == len(usdt)
    plan = st.plan_connections(expanded, 1024, 5)
    assert [len(p) for p in plan] == [703, 702]


# ---- URLs ---------------------------------------------------------------------------------------------

def test_build_url_combined_and_raw():
    base = "wss://stream.binance.com:9443/"
    assert st.build_url(base, ["!miniTicker@arr"], True) == "wss://stream.binance.com:9443/stream?streams=!miniTicker@arr"
    assert st.build_url(base, ["btcusdt@ticker", "ethbtc@ticker"], True) == (
        "wss://stream.binance.com:9443/stream?streams=btcusdt@ticker/ethbtc@ticker")
    assert st.build_url(base, ["!ticker@arr"], False) == "wss://stream.binance.com:9443/ws/!ticker@arr"
    assert st.build_url(base, ["a1@ticker", "b1@ticker"], False) == "wss://stream.binance.com:9443/ws/a1@ticker/b1@ticker"
    with pytest.raises(ValueError, match="at least one stream"):
        st.build_url(base, [], True)


def test_split_for_url_keeps_the_url_short():
    names = [f"sym{i:04d}usdt@miniTicker" for i in range(1024)]
    in_url, rest = st.split_for_url(names)
    assert in_url + rest == names
    assert len("/".join(in_url)) <= st.URL_MAX_CHARS
    assert len(in_url) == st.URL_MAX_CHARS // 23  # 22 characters + one separator each
    assert st.split_for_url(["!miniTicker@arr"]) == (["!miniTicker@arr"], [])
    assert st.split_for_url(["x" * 5000]) == (["x" * 5000], [])  # one always goes into the URL
    assert [len(c) for c in st.chunks(rest)] == [200, 200, 200, 200, 159]


def test_non_ascii_streams_are_percent_encoded_and_counted_at_their_encoded_length():
    url = st.build_url("wss://x", ["币安人生usdt@ticker", "!miniTicker@arr"], True)
    assert url == "wss://x/stream?streams=%E5%B8%81%E5%AE%89%E4%BA%BA%E7%94%9Fusdt@ticker/!miniTicker@arr"
    names = ["币安人生usdt@ticker"] * 100  # 46 URL characters each, 17 characters as a str
    in_url, _ = st.split_for_url(names)
    assert len(in_url) == st.URL_MAX_CHARS // 47
    assert st.combined_stream_name('{"stream":"币安人生usdt@ticker","data":{}}'.encode()) == "币安人生usdt@ticker"


# ---- splitting ----------------------------------------------------------------------------------------

def test_plan_connections_balances_and_respects_limits():
    names = [f"s{i}@ticker" for i in range(2500)]
    plan = st.plan_connections(names, 1024, 5)
    assert [len(p) for p in plan] == [834, 834, 832]
    assert [s for p in plan for s in p] == names
    assert st.plan_connections(["!miniTicker@arr"], 1024, 1) == [["!miniTicker@arr"]]
    assert st.plan_connections(names[:10], 3, 5) == [names[0:3], names[3:6], names[6:9], names[9:10]]


def test_plan_connections_impossible_gives_a_one_line_reason():
    names = [f"s{i}@ticker" for i in range(5000)]
    with pytest.raises(ConfigError) as err:
        st.plan_connections(names, 1024, 5)
    assert str(err.value) == ("5000 streams need 5 connections of at most 1024 streams, but only 4 may be used "
                              "(one of --max-connections is kept free for rotation)")
    with pytest.raises(ConfigError, match="between 1 and 1024"):
        st.plan_connections(names, 2000, 5)
    with pytest.raises(ConfigError, match="no streams"):
        st.plan_connections([], 1024, 5)


def test_combined_stream_name_reads_only_the_prefix():
    assert st.combined_stream_name('{"stream":"btcusdt@ticker","data":{"e":"x"}}') == "btcusdt@ticker"
    assert st.combined_stream_name('{"stream": "!miniTicker@arr", "data": []}') == "!miniTicker@arr"
    assert st.combined_stream_name(b'{"stream":"ethbtc@miniTicker","data":{}}') == "ethbtc@miniTicker"
    assert st.combined_stream_name('[{"e":"24hrMiniTicker"}]') is None
    assert st.combined_stream_name('{"result":null,"id":1}') is None
    assert st.combined_stream_name('{"stream"') is None
    assert st.combined_stream_name('{"stream":"' + "x" * 500) is None


# ---- backoff ------------------------------------------------------------------------------------------

def test_backoff_is_full_jitter_under_an_exponential_ceiling():
    b = Backoff(1.0, 60.0, random.Random(7).uniform)
    ceilings = []
    for _ in range(10):
        ceilings.append(b.ceiling())
        b.next_delay()
    assert ceilings == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]


def test_backoff_distribution_is_uniform_between_zero_and_the_ceiling():
    rng = random.Random(42)
    samples = []
    for _ in range(4000):
        b = Backoff(1.0, 60.0, rng.uniform)
        b.attempt = 3  # ceiling 8 s
        samples.append(b.next_delay())
    assert 0 <= min(samples) < 0.1 and 7.9 < max(samples) <= 8.0
    assert statistics.mean(samples) == pytest.approx(4.0, abs=0.2)


def test_backoff_never_exceeds_the_cap_and_never_gives_up():
    b = Backoff(0.5, 30.0)
    delays = [b.next_delay() for _ in range(10_000)]
    assert max(delays) <= 30.0 and b.attempt == 10_000


def test_backoff_reset_and_slow_down():
    b = Backoff(1.0, 60.0, lambda lo, hi: hi)  # always the upper bound, to see the ceiling
    for _ in range(4):
        b.next_delay()
    b.reset()
    assert b.next_delay() == 1.0
    low_b = Backoff(1.0, 60.0, lambda lo, hi: lo)  # always the lower bound
    low_b.slow_down()
    assert low_b.next_delay() == 30.0  # 1008: never sooner than half the cap
    assert low_b.next_delay() == 0.0 and low_b.ceiling() == 60.0  # then full jitter again, but from the cap
    with pytest.raises(ValueError, match="0 < initial_s"):
        Backoff(0, 1)
