"""The simulator's symbol universe: a recorded exchangeInfo, trimmed or scaled, with listings and delistings.

The worker learns the market from ``GET /api/v3/exchangeInfo``, so the simulator must serve a document of
the same shape as Binance's, and the streams must follow it: a symbol whose status is not TRADING does not
tick, a newly listed one starts ticking. Precisions and filters come from the recorded entries, so the
decimal strings the simulator sends have the same shapes as the real ones.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

CLONE_PREFIX = "SIM"
"""Synthetic clones are named ``SIM<n><BASE><QUOTE>``; no real Binance symbol starts with SIM and a digit."""


def decimal_to_units(text: str, precision: int) -> int:
    """'0.00010000' with precision 8 -> 10000: exact, via Decimal, because filters are decimal strings."""
    return int(Decimal(text).scaleb(precision))


@dataclass
class SymbolSpec:
    """What the generator needs from one exchangeInfo entry (the entry itself is kept for serving)."""

    entry: dict[str, Any]

    @property
    def symbol(self) -> str:
        symbol: str = self.entry["symbol"]
        return symbol

    @property
    def status(self) -> str:
        status: str = self.entry["status"]
        return status

    @property
    def price_precision(self) -> int:
        return int(self.entry.get("quotePrecision", 8))

    @property
    def base_precision(self) -> int:
        return int(self.entry.get("baseAssetPrecision", 8))

    @property
    def quote_precision(self) -> int:
        return int(self.entry.get("quoteAssetPrecision", self.entry.get("quotePrecision", 8)))

    def _filter(self, kind: str) -> dict[str, Any]:
        for flt in self.entry.get("filters", []):
            if flt.get("filterType") == kind:
                found: dict[str, Any] = flt
                return found
        return {}

    @property
    def tick_units(self) -> int:
        """Tick size in units of 10**-price_precision; at least 1 (some entries have tickSize 0)."""
        tick = self._filter("PRICE_FILTER").get("tickSize", "0")
        return max(1, decimal_to_units(tick, self.price_precision))

    @property
    def step_units(self) -> int:
        step = self._filter("LOT_SIZE").get("stepSize", "0")
        return max(1, decimal_to_units(step, self.base_precision))


class Universe:
    """The served exchangeInfo document and its symbols, in the recorded order."""

    def __init__(self, document: dict[str, Any], specs: Iterable[SymbolSpec]) -> None:
        self.document = {k: v for k, v in document.items() if k != "symbols"}
        self.specs: dict[str, SymbolSpec] = {spec.symbol: spec for spec in specs}
        self._cached: bytes | None = None

    @classmethod
    def load(cls, path: str | Path, symbols: int | None = None) -> Universe:
        """Load a recorded exchangeInfo; keep every non-TRADING symbol and ``symbols`` TRADING ones.

        When ``symbols`` is larger than the recorded TRADING set, extra symbols are cloned from the recorded
        ones, so load can be scaled past the real universe with real precisions. A clone's base asset is
        ``SIM<n><BASE>`` (``SIM1BTCUSDT``): a user watching the demo never mistakes it for a real symbol.
        """
        document = orjson.loads(Path(path).read_bytes())
        entries = document.get("symbols", [])
        trading = [e for e in entries if e.get("status") == "TRADING"]
        others = [e for e in entries if e.get("status") != "TRADING"]
        if symbols is None or symbols == len(trading):
            chosen = trading
        elif symbols < len(trading):
            chosen = trading[:symbols]
        else:
            chosen = list(trading)
            existing = {e["symbol"] for e in entries}
            copy_no = 1
            while len(chosen) < symbols and trading:
                for template in trading:
                    if len(chosen) >= symbols:
                        break
                    clone = copy.deepcopy(template)
                    clone["baseAsset"] = f"{CLONE_PREFIX}{copy_no}{template['baseAsset']}"
                    clone["symbol"] = clone["baseAsset"] + template["quoteAsset"]
                    if clone["symbol"] not in existing:
                        existing.add(clone["symbol"])
                        chosen.append(clone)
                copy_no += 1
        keep = {id(e) for e in chosen} | {id(e) for e in others}
        recorded = {id(e) for e in entries}
        ordered = [e for e in entries if id(e) in keep] + [e for e in chosen if id(e) not in recorded]
        return cls(document, (SymbolSpec(e) for e in ordered))

    @classmethod
    def minimal(cls, symbols: Iterable[str]) -> Universe:
        """A small synthetic exchangeInfo, for replays given without one: USDT quote, 8 decimals."""
        specs = [SymbolSpec(_synthetic_entry(name, name, "")) for name in symbols]
        document = {"timezone": "UTC", "serverTime": 0, "rateLimits": [], "exchangeFilters": []}
        return cls(document, specs)

    def trading(self) -> list[SymbolSpec]:
        return [spec for spec in self.specs.values() if spec.status == "TRADING"]

    def list_symbol(self, symbol: str, base: str, quote: str, status: str = "TRADING") -> SymbolSpec:
        """Add (or re-list) a symbol; its filters are copied from a TRADING symbol with the same quote."""
        symbol = symbol.upper()
        if symbol in self.specs:
            self.specs[symbol].entry["status"] = status
            self._cached = None
            return self.specs[symbol]
        template = next((s.entry for s in self.trading() if s.entry.get("quoteAsset") == quote), None)
        entry = _synthetic_entry(symbol, base, quote, template)
        entry["status"] = status
        spec = SymbolSpec(entry)
        self.specs[symbol] = spec
        self._cached = None
        return spec

    def set_status(self, symbol: str, status: str) -> SymbolSpec:
        spec = self.specs[symbol.upper()]
        spec.entry["status"] = status
        self._cached = None
        return spec

    def serialize(self, only: list[str] | None = None) -> bytes:
        """The exchangeInfo body; the full one is cached until the universe changes."""
        if only is not None:
            body = dict(self.document, serverTime=int(time.time() * 1000))
            body["symbols"] = [self.specs[s].entry for s in only]
            return orjson.dumps(body)
        if self._cached is None:
            body = dict(self.document, serverTime=int(time.time() * 1000))
            body["symbols"] = [spec.entry for spec in self.specs.values()]
            self._cached = orjson.dumps(body)
        return self._cached


def _synthetic_entry(symbol: str, base: str, quote: str, template: dict[str, Any] | None = None) -> dict[str, Any]:
    if template is not None:
        entry = copy.deepcopy(template)
        entry.update(symbol=symbol, baseAsset=base, quoteAsset=quote)
        return entry
    return {
        "symbol": symbol, "status": "TRADING", "baseAsset": base or symbol, "baseAssetPrecision": 8,
        "quoteAsset": quote or "USDT", "quotePrecision": 8, "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "MARKET"], "isSpotTradingAllowed": True,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000",
             "tickSize": "0.01000000"},
            {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000", "stepSize": "0.00001000"},
        ],
        "permissions": ["SPOT"],
    }
