"""The worker's read-only start checks: symbols exchangeInfo does not list are refused, listed ones are not."""

from __future__ import annotations

import pytest

from ingest.config import ConfigError
from ingest.worker import check_symbols_exist

INFO = {"symbols": [{"symbol": "BTCUSDT", "status": "TRADING"}, {"symbol": "BCCBTC", "status": "BREAK"}]}


def test_listed_symbols_and_array_streams_pass_even_when_not_trading():
    check_symbols_exist(["!miniTicker@arr", "btcusdt@ticker", "bccbtc@miniTicker"], INFO, "http://rest")


def test_a_symbol_exchange_info_does_not_list_is_refused_naming_it_and_the_count():
    with pytest.raises(ConfigError, match=r"nosuchcoin@ticker and 1 more: symbol NOSUCHCOIN is not in exchangeInfo"):
        check_symbols_exist(["btcusdt@ticker", "nosuchcoin@ticker", "xyzusdt@ticker"], INFO, "http://rest")
