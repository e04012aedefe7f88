"""Generated market state: one random walk per TRADING symbol, kept as integers, rendered as Binance strings.

Prices and volumes are integers in units of 10**-precision, so every value the simulator sends is an exact
decimal with the symbol's precision (Binance formats ticker prices with ``quotePrecision`` decimals, volumes
with ``baseAssetPrecision`` and quote volumes with ``quoteAssetPrecision``) and every price is a multiple of
the symbol's tick size. Rendering is a few string operations per value, because the simulator has to push
100,000 tickers per second from one core: no floats, no Decimal, no JSON encoder on the hot path.
Streams and REST answers are rendered from the same state, so they agree.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import orjson

from ingest.sim.universe import SymbolSpec, Universe, decimal_to_units

DAY_MS = 86_400_000

MINI_TEMPLATE = '{"e":"24hrMiniTicker","E":%d,"s":"%s","c":"%s","o":"%s","h":"%s","l":"%s","v":"%s","q":"%s"}'
TICKER_TEMPLATE = (
    '{"e":"24hrTicker","E":%d,"s":"%s","p":"%s","P":"%s","w":"%s","x":"%s","c":"%s","Q":"%s","b":"%s",'
    '"B":"%s","a":"%s","A":"%s","o":"%s","h":"%s","l":"%s","v":"%s","q":"%s","O":%d,"C":%d,"F":%d,"L":%d,"n":%d}'
)
# The same templates cut around the fields that depend on the event time (E, and a ticker's O = E - 24 h and
# C = E), so a tick's values can be rendered first and E stamped after (``array_json``): E is then the time the
# event is complete and about to be sent, as on Binance, not the time before ~15 ms of string formatting.
MINI_HEAD = '{"e":"24hrMiniTicker","E":%d,'
MINI_BODY = '"s":"%s","c":"%s","o":"%s","h":"%s","l":"%s","v":"%s","q":"%s"}'
TICKER_HEAD = '{"e":"24hrTicker","E":%d,'
TICKER_BODY = ('"s":"%s","p":"%s","P":"%s","w":"%s","x":"%s","c":"%s","Q":"%s","b":"%s",'
               '"B":"%s","a":"%s","A":"%s","o":"%s","h":"%s","l":"%s","v":"%s","q":"%s",')
TICKER_TIMES = '"O":%d,"C":%d,'
TICKER_TAIL = '"F":%d,"L":%d,"n":%d}'



def ascii_lower(text: str) -> str:
    """Lower-case the ASCII letters only, as Binance does for stream names ('ÄBCUSDT' -> 'Äbcusdt')."""
    return text.translate(ASCII_LOWER)


ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def stream_symbols(symbol: str) -> tuple[str, ...]:
    """The forms of a symbol accepted in stream names: Python's str.lower() and Binance's ASCII-only lowering.

    They differ only for non-ASCII letters that have a lower case (not for CJK, which has none); a client may
    use either, so the simulator serves both (each subscriber gets the name it subscribed with)."""
    python, binance = symbol.lower(), ascii_lower(symbol)
    return (python,) if python == binance else (python, binance)


def fmt(units: int, precision: int) -> str:
    """Integer units of 10**-precision -> Binance's fixed-point string ('0.00150000', '-12.50')."""
    if units < 0:
        return "-" + fmt(-units, precision)
    if precision == 0:
        return str(units)
    digits = str(units).rjust(precision + 1, "0")
    return digits[:-precision] + "." + digits[-precision:]


def percent(change: int, base: int) -> str:
    """priceChangePercent: three decimals, truncated toward zero like Binance's ('-1.026')."""
    if base == 0:
        return "0.000"
    thousandths = abs(change) * 100_000 // base
    return ("-" if change < 0 and thousandths else "") + fmt(thousandths, 3)


class SymbolState:
    """One symbol's 24 h statistics as integers, plus its last event time."""

    __slots__ = (
        "A",
        "B",
        "E",
        "ask",
        "bid",
        "bp",
        "first_id",
        "high",
        "last",
        "last_id",
        "last_qty",
        "low",
        "lower",
        "max_move",
        "name",
        "open",
        "pp",
        "prev_close",
        "qp",
        "quote_div",
        "qvol",
        "spec",
        "step",
        "stream_symbols",
        "tick",
        "vol",
    )

    def __init__(self, spec: SymbolSpec, rng: random.Random, seed_values: dict[str, Any] | None) -> None:
        self.spec = spec
        self.name = spec.symbol
        self.lower = spec.symbol.lower()
        self.stream_symbols = stream_symbols(spec.symbol)
        self.pp, self.bp, self.qp = spec.price_precision, spec.base_precision, spec.quote_precision
        self.tick, self.step = spec.tick_units, spec.step_units
        self.quote_div: int = 10 ** max(0, self.bp + self.pp - self.qp)
        price = 0
        if seed_values and seed_values.get("lastPrice"):
            price = decimal_to_units(seed_values["lastPrice"], self.pp)
        if price <= 0:
            price = self.tick * rng.randint(200, 200_000)
        price = max(self.tick, price // self.tick * self.tick)
        self.last = self.open = self.high = self.low = self.prev_close = price
        self.max_move = max(1, price // self.tick // 1000)
        self.vol = self.step * rng.randint(1_000, 1_000_000)
        self.qvol = self.vol * price // self.quote_div
        self.last_qty = self.step
        self.bid, self.ask = max(self.tick, price - self.tick), price + self.tick
        self.B = self.A = self.step
        start_id = rng.randint(1, 10**9)
        if seed_values and int(seed_values.get("firstId", -1)) >= 0:
            start_id = int(seed_values["firstId"])
        self.first_id = start_id
        self.last_id = start_id + rng.randint(0, 10_000)
        self.E = 0

    def advance(self, rnd: Any, event_time: int) -> None:
        """One random-walk step: a few trades, price moves by whole ticks and never below one tick."""
        tick = self.tick
        moves = int((rnd() - 0.5) * 2.0 * (self.max_move + 1))
        price = self.last + moves * tick
        if price < tick:
            price = tick
        trades = 1 + int(rnd() * 5)
        qty = self.step * (1 + int(rnd() * 100))
        self.last = price
        self.last_qty = qty
        self.last_id += trades
        self.vol += qty * trades
        self.qvol += qty * trades * price // self.quote_div
        if price > self.high:
            self.high = price
        elif price < self.low:
            self.low = price
        self.bid = price - tick if price > tick else price
        self.ask = price + tick
        self.B = self.step * (1 + int(rnd() * 1000))
        self.A = self.step * (1 + int(rnd() * 1000))
        if event_time:
            self.E = event_time

    def mini_json(self) -> str:
        return MINI_HEAD % self.E + self.mini_body()

    def mini_body(self) -> str:
        """The mini ticker's JSON after its event time (``MINI_HEAD`` % E + this = ``mini_json``)."""
        pp = self.pp
        return MINI_BODY % (
            self.name, fmt(self.last, pp), fmt(self.open, pp), fmt(self.high, pp), fmt(self.low, pp),
            fmt(self.vol, self.bp), fmt(self.qvol, self.qp),
        )

    def weighted_avg(self) -> int:
        if self.vol == 0:
            return 0
        average: int = self.qvol * self.quote_div // self.vol
        return average

    def ticker_json(self) -> str:
        body, tail = self.ticker_body()
        return TICKER_HEAD % self.E + body + TICKER_TIMES % (self.E - DAY_MS, self.E) + tail

    def ticker_body(self) -> tuple[str, str]:
        """The ticker's JSON without its event-time fields: (the part after E, the part after O and C)."""
        pp, bp = self.pp, self.bp
        change = self.last - self.open
        return TICKER_BODY % (
            self.name, fmt(change, pp), percent(change, self.open), fmt(self.weighted_avg(), pp),
            fmt(self.prev_close, pp), fmt(self.last, pp), fmt(self.last_qty, bp), fmt(self.bid, pp),
            fmt(self.B, bp), fmt(self.ask, pp), fmt(self.A, bp), fmt(self.open, pp), fmt(self.high, pp),
            fmt(self.low, pp), fmt(self.vol, bp), fmt(self.qvol, self.qp),
        ), TICKER_TAIL % (self.first_id, self.last_id, self.last_id - self.first_id + 1)

    def rest_24hr(self, now_ms: int) -> dict[str, Any]:
        """The REST ticker/24hr object: the same values as the last streamed ticker, REST field names."""
        pp, bp = self.pp, self.bp
        change = self.last - self.open
        close_time = self.E or now_ms
        return {
            "symbol": self.name, "priceChange": fmt(change, pp), "priceChangePercent": percent(change, self.open),
            "weightedAvgPrice": fmt(self.weighted_avg(), pp), "prevClosePrice": fmt(self.prev_close, pp),
            "lastPrice": fmt(self.last, pp), "lastQty": fmt(self.last_qty, bp), "bidPrice": fmt(self.bid, pp),
            "bidQty": fmt(self.B, bp), "askPrice": fmt(self.ask, pp), "askQty": fmt(self.A, bp),
            "openPrice": fmt(self.open, pp), "highPrice": fmt(self.high, pp), "lowPrice": fmt(self.low, pp),
            "volume": fmt(self.vol, bp), "quoteVolume": fmt(self.qvol, self.qp), "openTime": close_time - DAY_MS,
            "closeTime": close_time, "firstId": self.first_id, "lastId": self.last_id,
            "count": self.last_id - self.first_id + 1,
        }

    def rest_price(self) -> dict[str, str]:
        return {"symbol": self.name, "price": fmt(self.last, self.pp)}


def render_bodies(kind: str, states: list[SymbolState]) -> list[Any]:
    """Each state's JSON without its event-time fields, for ``render_array`` once E is stamped."""
    if kind == "ticker":
        return [s.ticker_body() for s in states]
    return [s.mini_body() for s in states]


def render_array(kind: str, bodies: list[Any], event_time: int) -> list[str]:
    """Each ticker's full JSON from ``render_bodies`` and the tick's event time (one E for all of them)."""
    if kind == "ticker":
        head, times = TICKER_HEAD % event_time, TICKER_TIMES % (event_time - DAY_MS, event_time)
        return [head + body + times + tail for body, tail in bodies]
    head = MINI_HEAD % event_time
    return [head + body for body in bodies]


def load_seed_prices(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """Initial values from a recorded ticker/24hr array (read at run time, never copied); {} when absent."""
    if not path or not Path(path).exists():
        return {}
    return {row["symbol"]: row for row in orjson.loads(Path(path).read_bytes()) if isinstance(row, dict)}


class Market:
    """Every symbol's state; ``tick`` advances a random subset of the TRADING ones with one event time."""

    def __init__(self, universe: Universe, seed: int | None = None,
                 seed_values: dict[str, dict[str, Any]] | None = None) -> None:
        self.universe = universe
        self.rng = random.Random(seed)
        self.seed_values = seed_values or {}
        self.states: dict[str, SymbolState] = {}
        for spec in universe.specs.values():
            self.states[spec.symbol] = SymbolState(spec, self.rng, self.seed_values.get(spec.symbol))
        self.trading: list[SymbolState] = []
        self.refresh_trading()
        self.last_event_time = 0

    def refresh_trading(self) -> None:
        """Re-read statuses: only TRADING symbols tick (called after a listing or delisting)."""
        for spec in self.universe.specs.values():
            if spec.symbol not in self.states:
                self.states[spec.symbol] = SymbolState(spec, self.rng, self.seed_values.get(spec.symbol))
        self.trading = [self.states[s.symbol] for s in self.universe.specs.values() if s.status == "TRADING"]

    def next_event_time(self) -> int:
        """Wall-clock ms, but strictly increasing, so E never repeats for a symbol even at 1 ms intervals."""
        now = int(time.time() * 1000)
        if now <= self.last_event_time:
            now = self.last_event_time + 1
        self.last_event_time = now
        return now

    def tick(self, count: int, stamp: bool = True) -> list[SymbolState]:
        """Advance ``count`` distinct TRADING symbols (all of them when count >= their number).

        ``stamp=False`` leaves their event time for ``stamp`` (the server stamps after rendering); one event
        time per tick either way, so E never runs ahead of the wall clock at 1 ms intervals."""
        trading = self.trading
        if count <= 0 or not trading:
            return []
        chosen = trading if count >= len(trading) else self.rng.sample(trading, count)
        event_time = self.next_event_time() if stamp else 0
        rnd = self.rng.random
        for state in chosen:
            state.advance(rnd, event_time)
        return chosen

    def stamp(self, states: list[SymbolState]) -> int:
        """Give ``states`` a new (later) event time: the server stamps a tick again once it is rendered."""
        event_time = self.next_event_time()
        for state in states:
            state.E = event_time
        return event_time
