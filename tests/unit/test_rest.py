"""REST client: weight accounting on a fake clock, and 429/418/5xx/network handling against a real local HTTP
server (scripted responses). Sleeping is faked (it advances the fake clock), so Retry-After values of minutes
cost no test time, and the tests can assert exactly how long the client chose to wait."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from ingest import metrics
from ingest.binance import rest
from ingest.binance.limits import LocationRefusal
from ingest.binance.rest import RestClient, RestError, WeightBudget
from ingest.config import Settings

T0 = 1_699_999_980.0 + 20.0  # 20 s into a minute (1_699_999_980 is a multiple of 60)
TICKER_24HR_CAPTURE = Path(__file__).resolve().parents[3] / "shared" / "data" / "binance-captures" / "ticker24hr.json"


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def requests_count(endpoint: str, status: str) -> float:
    return metrics.REGISTRY.get_sample_value("binance_ingest_rest_requests_total",
                                             {"endpoint": endpoint, "status": status}) or 0.0


# ---- pure weight rules --------------------------------------------------------------------------------

def test_ticker_24hr_weights_and_cheapest_request():
    assert [rest.ticker_24hr_weight(n) for n in (1, 20, 21, 100, 101, None)] == [2, 2, 40, 40, 80, 80]
    assert rest.ticker_24hr_request(["btcusdt"]) == ({"symbol": "BTCUSDT"}, 2, False)
    assert rest.ticker_24hr_request(["BTCUSDT", "ETHBTC"]) == ({"symbols": '["BTCUSDT","ETHBTC"]'}, 2, False)
    params, weight, local = rest.ticker_24hr_request([f"S{i}" for i in range(50)])
    assert weight == 40 and not local and params["symbols"].count(",") == 49
    assert rest.ticker_24hr_request([f"S{i}" for i in range(150)]) == ({}, 80, True)
    assert rest.ticker_24hr_request(None) == ({}, 80, False)
    assert [rest.ticker_price_weight(n) for n in (1, 5, None)] == [2, 4, 4]


# ---- the budget on a fake clock -----------------------------------------------------------------------

def test_budget_waits_for_the_next_minute_instead_of_exceeding():
    clock = FakeClock()
    budget = WeightBudget(limit=100, margin=0.1, clock=clock)  # 90 usable
    for _ in range(4):
        assert budget.wait_s(20) == 0
        budget.spend(20)
    assert budget.used == 80
    assert budget.wait_s(10) == 0  # exactly 90 is still allowed
    assert budget.wait_s(20) == pytest.approx(40.0 + rest.MINUTE_SLACK_S)  # 40 s left in this minute
    clock.now += 41.0
    assert budget.wait_s(20) == 0 and budget.used == 0  # new minute, fresh budget
    assert metrics.REGISTRY.get_sample_value("binance_ingest_rest_weight_limit") == 100


def test_budget_adopts_the_server_count_but_never_lowers_it():
    clock = FakeClock()
    budget = WeightBudget(limit=1000, clock=clock)
    budget.spend(20)
    minute = budget.minute
    budget.observe(850, minute)  # someone else on this IP used weight too
    assert budget.used == 850
    assert budget.wait_s(80) > 0
    budget.observe(10, minute)
    assert budget.used == 850
    budget.observe(999, minute - 1)  # a count from an older minute says nothing about this one
    assert budget.used == 850
    assert metrics.REGISTRY.get_sample_value("binance_ingest_rest_weight_used") == 850


def test_budget_block_holds_every_request():
    clock = FakeClock()
    budget = WeightBudget(clock=clock)
    budget.block_for(120)
    assert budget.wait_s(1) == 120
    clock.now += 119.5
    assert budget.wait_s(1) == pytest.approx(0.5)
    clock.now += 1
    assert budget.wait_s(1) == 0


# ---- against a real HTTP server -----------------------------------------------------------------------

class ScriptedBinance:
    """Serves scripted (status, headers, body) responses in order; afterwards 200 with ``default``."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str], bytes]] = []
        self.default: object = []
        self.seen: list[str] = []
        self.gzip = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's naming
                outer.seen.append(self.path)
                if outer.script:
                    status, headers, body = outer.script.pop(0)
                else:
                    status, headers, body = 200, {"X-MBX-USED-WEIGHT-1M": "1"}, json.dumps(outer.default).encode()
                if outer.gzip and status == 200:
                    body = gzip.compress(body)
                    headers = {**headers, "Content-Encoding": "gzip"}
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def binance() -> Iterator[ScriptedBinance]:
    server = ScriptedBinance()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def client(url: str, clock: FakeClock, **kwargs) -> RestClient:
    s = Settings(rest_url=url, backoff_initial_s=1.0, backoff_max_s=8.0)
    return RestClient(s, clock=clock, sleep=clock.sleep, timeout_s=5.0, **kwargs)


def test_429_waits_the_retry_after_then_succeeds(binance):
    clock = FakeClock()
    binance.script = [(429, {"Retry-After": "7"}, b'{"code":-1003,"msg":"Too many requests"}')]
    binance.default = [{"symbol": "BTCUSDT", "price": "1.0"}]
    before = requests_count(rest.TICKER_PRICE, "429")
    result = asyncio.run(client(binance.url, clock).ticker_price())
    assert result == [{"symbol": "BTCUSDT", "price": "1.0"}]
    assert clock.sleeps == [7.0]
    assert requests_count(rest.TICKER_PRICE, "429") - before == 1
    assert len(binance.seen) == 2


def test_418_ban_blocks_every_request_for_its_duration(binance):
    clock = FakeClock()
    binance.script = [(418, {"Retry-After": "300"}, b'{"code":-1003,"msg":"banned"}')]
    c = client(binance.url, clock)

    async def two_calls():
        first = asyncio.create_task(c.ticker_price(["BTCUSDT"]))
        second = asyncio.create_task(c.ticker_price(["ETHBTC"]))
        await asyncio.gather(first, second)

    before = requests_count(rest.TICKER_PRICE, "418")
    asyncio.run(two_calls())
    assert sum(clock.sleeps) >= 300  # nothing went out before the ban ended
    assert requests_count(rest.TICKER_PRICE, "418") - before == 1
    assert len(binance.seen) == 3


def test_5xx_is_retried_with_backoff_and_4xx_is_not(binance):
    clock = FakeClock()
    binance.script = [(503, {}, b"busy"), (500, {}, b"oops")]
    binance.default = {"symbol": "BTCUSDT", "lastPrice": "2.0"}
    assert asyncio.run(client(binance.url, clock).ticker_24hr(["BTCUSDT"])) == [binance.default]
    assert len(clock.sleeps) == 2 and all(0 <= s <= 8.0 for s in clock.sleeps)
    binance.script = [(400, {}, b'{"code":-1121,"msg":"Invalid symbol."}')]
    with pytest.raises(RestError, match="400") as err:
        asyncio.run(client(binance.url, FakeClock()).ticker_24hr(["NOPE"]))
    assert err.value.status == 400


def test_retries_are_bounded_and_network_errors_counted():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    clock = FakeClock()
    before = requests_count(rest.EXCHANGE_INFO, "error")
    with pytest.raises(RestError, match="error"):
        asyncio.run(client(f"http://127.0.0.1:{port}", clock, max_attempts=3).exchange_info())
    assert requests_count(rest.EXCHANGE_INFO, "error") - before == 3
    assert len(clock.sleeps) == 2


def test_exchange_info_sets_the_limit_and_the_header_drives_the_budget(binance):
    clock = FakeClock()
    binance.default = {"rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                                       "limit": 1200}], "symbols": []}
    binance.script = [(200, {"X-MBX-USED-WEIGHT-1M": "1070"}, json.dumps(binance.default).encode())]
    c = client(binance.url, clock)

    async def calls():
        await c.exchange_info()
        assert c.budget.limit == 1200 and c.budget.used == 1070
        await c.exchange_info()  # 1070 + 20 > 1080 (1200 - 10 %): must wait for the next minute

    asyncio.run(calls())
    assert clock.sleeps == [pytest.approx(40.0 + rest.MINUTE_SLACK_S)]
    assert len(binance.seen) == 2


def test_ticker_24hr_for_many_symbols_asks_for_all_and_filters(binance):
    clock = FakeClock()
    binance.gzip = True
    binance.default = [{"symbol": f"S{i}USDT", "lastPrice": "1.0"} for i in range(300)]
    wanted = [f"S{i}USDT" for i in range(0, 300, 2)]
    got = asyncio.run(client(binance.url, clock).ticker_24hr(wanted))
    assert [e["symbol"] for e in got] == wanted
    assert binance.seen == ["/api/v3/ticker/24hr"]
    asyncio.run(client(binance.url, clock).ticker_24hr(["S1USDT", "S2USDT"]))
    query = parse_qs(urlsplit(binance.seen[-1]).query)
    assert query == {"symbols": ['["S1USDT","S2USDT"]']}


@pytest.mark.skipif(not TICKER_24HR_CAPTURE.exists(), reason="shared binance-captures folder not present")
def test_real_ticker_24hr_payload_round_trips(binance):
    binance.default = json.loads(TICKER_24HR_CAPTURE.read_text())
    got = asyncio.run(client(binance.url, FakeClock()).ticker_24hr())
    assert len(got) == 2519
    assert got == binance.default  # decimal strings untouched


# ---- the exchange's refusals: 451 (location) and 403 (WAF) ---------------------------------------------

def test_451_fails_at_once_holds_every_request_for_minutes_and_logs_one_clear_line(binance, caplog):
    """Catches: 451 retried like a 5xx (several requests within seconds), no hold for the next call, the error
    line repeated per call, and a refusal that never clears once Binance answers again."""
    clock = FakeClock()
    refusal = LocationRefusal(300.0, clock=clock)
    body = b'{"code":0,"msg":"Service unavailable from a restricted location according to b. Eligibility"}'
    binance.script = [(451, {}, body), (451, {}, body)]
    binance.default = [{"symbol": "BTCUSDT", "price": "1.0"}]
    c = client(binance.url, clock, refusal=refusal)
    caplog.set_level(logging.INFO, logger="ingest")

    async def calls():
        with pytest.raises(RestError, match="451"):
            await c.ticker_price()
        assert len(binance.seen) == 1 and clock.sleeps == []  # no retry inside the call
        assert refusal.refused and "451" in refusal.reason()
        with pytest.raises(RestError, match="451"):
            await c.ticker_price()  # waits out the hold first, then asks once
        assert clock.sleeps == [300.0] and len(binance.seen) == 2
        return await c.ticker_price()

    assert asyncio.run(calls()) == binance.default
    assert sum(clock.sleeps) == 600.0 and len(binance.seen) == 3
    assert not refusal.refused and refusal.reason() == ""
    lines = [r for r in caplog.records if "refuses this location" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.ERROR
    assert "HTTP 451" in lines[0].getMessage() and "allowed region" in lines[0].getMessage()
    assert "restricted location" in lines[0].getMessage()  # Binance's own words reach the operator
    assert metrics.REGISTRY.get_sample_value("binance_ingest_location_refused", {"source": "rest"}) == 0


@pytest.mark.parametrize(("headers", "expected"), [({"Retry-After": "42"}, 42.0), ({}, rest.DEFAULT_RETRY_AFTER_S)])
def test_403_waf_backs_off_like_429(binance, headers, expected):
    """Catches: 403 raised at once as an ordinary 4xx (the caller's next call would hit the WAF again)."""
    clock = FakeClock()
    binance.script = [(403, headers, b"<html>403 Forbidden</html>")]
    binance.default = [{"symbol": "BTCUSDT", "price": "1.0"}]
    before = requests_count(rest.TICKER_PRICE, "403")
    assert asyncio.run(client(binance.url, clock).ticker_price()) == binance.default
    assert clock.sleeps == [expected]
    assert requests_count(rest.TICKER_PRICE, "403") - before == 1
