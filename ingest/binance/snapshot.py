"""The REST ticker/24hr snapshot after a (re)connect: only what is streamed, at the least request weight.

A snapshot restores the state a reconnect may have missed. It must cover exactly the symbols and record kinds
the connection streams: ``!miniTicker@arr,btcusdt@ticker`` restores every TRADING symbol's mini ticker and
BTCUSDT's ticker, never a ticker record of every symbol (that would put data into the ticker topic that no
stream of ours carries).

Binance weighs ``GET /api/v3/ticker/24hr`` by the number of symbols asked for (DESIGN §6): 2 for 1-20, 40 for
21-100, 80 for more or all. So a list of n symbols costs least as requests of 20 (2 each) while that stays
below the 80 of one all-symbol request (n <= 780); above that one all-symbol request filtered locally is
cheaper (and needs far fewer requests). All-market streams ask with ``symbolStatus=TRADING`` (only TRADING
symbols stream), mini tickers with ``type=MINI`` (a smaller answer for the same weight). When both kinds are
streamed, one FULL request over the union may cost less than one request per kind (a FULL entry carries the
mini ticker's fields too); the plan with the least total weight wins, fewer requests on a tie.

``symbolStatus=TRADING`` misses a symbol delisted while we were not streaming it (connection down, shard
unowned): its last ticks were lost and the snapshot no longer lists it, so its final state would never reach
Kafka. So an all-market snapshot also asks for the symbols that left TRADING recently (``left``, kept 24 h by
``ingest.listings``) in ``symbols=`` lists of 20 (2 each); the per-symbol dedupe drops what we already have.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, Protocol

from ingest.binance import streams as stream_names
from ingest.binance.rest import ticker_24hr_weight

log = logging.getLogger(__name__)

LIST_STEP = 20
"""Symbols per listed request at Binance's cheapest weight step (1-20 symbols cost 2)."""

Scope = Mapping[str, frozenset[str] | None]
"""Record kind -> the symbols to restore, or None for every TRADING symbol (an all-market stream)."""


class Request(NamedTuple):
    """One ticker/24hr request of a plan: ``symbols`` None asks for every TRADING symbol."""

    symbols: tuple[str, ...] | None
    mini: bool
    weight: int


class Ticker24hr(Protocol):
    async def ticker_24hr(self, symbols: list[str] | None = None, *, mini: bool = False,
                          trading_only: bool = False) -> list[dict[str, Any]]: ...


def scope(streams: Iterable[str]) -> dict[str, frozenset[str] | None]:
    """What the snapshot of these (concrete) streams must cover, per record kind."""
    out: dict[str, set[str] | None] = {}
    for name in streams:
        kind = stream_names.kind(name)
        if name in stream_names.ALL_MARKET:
            out[kind] = None
        elif (symbols := out.setdefault(kind, set())) is not None:
            symbols.add(stream_names.symbol(name))
    return {kind: None if symbols is None else frozenset(symbols) for kind, symbols in out.items()}


def _cover(symbols: frozenset[str] | None, mini: bool) -> list[Request]:
    """The cheapest requests that return (at least) these symbols' entries."""
    if symbols is not None and LIST_STEP // 10 * math.ceil(len(symbols) / LIST_STEP) < ticker_24hr_weight(None):
        ordered = sorted(symbols)
        return [Request(tuple(ordered[i:i + LIST_STEP]), mini, ticker_24hr_weight(len(ordered[i:i + LIST_STEP])))
                for i in range(0, len(ordered), LIST_STEP)]
    return [Request(None, mini, ticker_24hr_weight(None))]


def plan_left(wanted: Scope, left: Iterable[str]) -> list[Request]:
    """Listed requests for symbols that left TRADING recently, when an all-market kind is streamed (the
    TRADING-only all-symbol request misses them). MINI when mini tickers are the only all-market kind. Always
    lists of 20 (2 each): never an all-symbol request, which would not return them."""
    kinds = {kind for kind, symbols in wanted.items() if symbols is None}
    ordered = sorted(set(left))
    if not kinds or not ordered:
        return []
    mini = kinds == {"miniticker"}
    return [Request(tuple(ordered[i:i + LIST_STEP]), mini, ticker_24hr_weight(len(ordered[i:i + LIST_STEP])))
            for i in range(0, len(ordered), LIST_STEP)]


def plan(wanted: Scope) -> list[Request]:
    """The requests of least total weight (then fewest requests) that cover ``wanted``."""
    separate = [r for kind, symbols in sorted(wanted.items()) for r in _cover(symbols, kind == "miniticker")]
    if len(wanted) < 2:
        return separate
    sets = list(wanted.values())
    union = None if any(s is None for s in sets) else frozenset().union(*sets)  # type: ignore[arg-type]
    together = _cover(union, mini=False)

    def cost(requests: list[Request]) -> tuple[int, int]:
        return sum(r.weight for r in requests), len(requests)

    return together if cost(together) <= cost(separate) else separate


Entries = dict[str, list[dict[str, Any]]]


async def fetch(rest: Ticker24hr, streams: Iterable[str],
                left: Iterable[str] = ()) -> tuple[Entries, int]:
    """(REST entries per record kind, failed requests) for the snapshot of these streams.

    Each kind gets only the entries of its own symbols (all TRADING ones for an all-market stream, plus the
    recently ``left`` ones). A request that fails is logged and counted; the others still restore theirs."""
    wanted = scope(streams)
    return await _ask(rest, wanted, plan(wanted) + plan_left(wanted, left))


async def fetch_left(rest: Ticker24hr, streams: Iterable[str], left: Iterable[str]) -> tuple[Entries, int]:
    """Only the final state of symbols that just left TRADING, for the all-market kinds of these streams: a
    delisting seen at an exchangeInfo refresh after the last (re)connect snapshot. No request when none."""
    wanted: Scope = {kind: None for kind, symbols in scope(streams).items() if symbols is None}
    return await _ask(rest, wanted, plan_left(wanted, left))


async def _ask(rest: Ticker24hr, wanted: Scope, requests: list[Request]) -> tuple[Entries, int]:
    answers = await asyncio.gather(*(rest.ticker_24hr(list(r.symbols) if r.symbols is not None else None,
                                                      mini=r.mini, trading_only=r.symbols is None)
                                     for r in requests), return_exceptions=True)
    out: Entries = {kind: [] for kind in wanted}
    taken: set[tuple[str, str]] = set()
    failed = 0
    for request, answer in zip(requests, answers, strict=True):
        if isinstance(answer, BaseException):
            if not isinstance(answer, Exception):
                raise answer  # cancellation, KeyboardInterrupt: not a failed request
            failed += 1
            log.warning("snapshot request failed", extra={"symbols": len(request.symbols or ()) or "all",
                                                          "reason": repr(answer)[:200]})
            continue
        kinds = [kind for kind in wanted if not request.mini or kind == "miniticker"]  # MINI lacks ticker fields
        for entry in answer:
            name = entry.get("symbol") if isinstance(entry, dict) else None
            if not isinstance(name, str):  # malformed: once, to be dead-lettered, never dropped unseen
                out[kinds[0]].append(entry)
                continue
            for kind in kinds:
                if (wanted[kind] is None or name in wanted[kind]) and (kind, name) not in taken:  # type: ignore[operator]
                    taken.add((kind, name))  # once per kind, though a symbol may be in two requests
                    out[kind].append(entry)
    return out, failed


def restrict(by_kind: Mapping[str, list[Any]], streams: Iterable[str]) -> dict[str, list[Any]]:
    """The entries of ``by_kind`` that these streams still cover (a coordinated replica may have released a
    shard while its snapshot request was out: that shard's next owner restores it, and a second copy from us
    would be a duplicate in Kafka). Malformed entries stay, to be dead-lettered."""
    wanted = scope(streams)
    return {kind: [e for e in entries if symbols is None or not isinstance(e, dict) or e.get("symbol") in symbols]
            for kind, entries in by_kind.items() if kind in wanted for symbols in (wanted[kind],)}
