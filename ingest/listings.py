"""Following the exchange's listings: exchangeInfo at start and every ``--exchange-info-refresh-s``.

Each exchangeInfo publishes the symbols that changed to the compacted symbols topic and, when the settings
use per-symbol stream patterns (``<symbol>@ticker`` for every TRADING symbol, or a retired all-market stream
served that way), re-derives the concrete streams so listings are subscribed and delistings dropped. A
refresh that fails keeps the symbols we know: streaming goes on.

Symbols that leave TRADING are remembered with the time they left for ``LEFT_KEEP_S`` (Binance's 24 h statistics
window), then forgotten: an all-market snapshot asks for them too (its ``symbolStatus=TRADING`` request no
longer lists them, so a delisting while a connection was down or a shard unowned would lose their final state),
and a refresh that sees a delisting takes a snapshot of just those symbols at once (``on_delisted``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ingest import metrics
from ingest.binance import streams as stream_names
from ingest.binance.rest import RestClient
from ingest.config import ConfigError, Settings
from ingest.fatal import FatalError
from ingest.kafka.topics import KnownSymbols

log = logging.getLogger("ingest.worker")

Publish = Callable[[KnownSymbols, Iterable[str]], Awaitable[int]]
"""Writes the named symbols' records (``publish_symbols`` bound to the sink and the symbols encoder)."""
OnStreams = Callable[[list[str]], Awaitable[None]]
"""Applies a new concrete stream set (the worker's: re-shard, SUBSCRIBE/UNSUBSCRIBE, metrics series)."""
OnDelisted = Callable[[list[str]], Awaitable[None]]
"""Symbols a refresh saw leave TRADING (the worker's: snapshot their final state where it streams them)."""

LEFT_KEEP_S = 24 * 3600.0
"""How long a symbol that left TRADING is remembered: Binance's ticker/24hr window, after which its REST entry
no longer tells anything a snapshot could restore."""


class Listings:
    """The exchange's symbols as last seen, and the concrete streams they make of the settings' patterns."""

    def __init__(self, settings: Settings, rest: RestClient, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.rest = rest
        self.known = KnownSymbols()
        self.clock = clock
        self._skipped: set[str] = set()  # symbols that cannot be stream names, warned about once
        self._left: dict[str, float] = {}  # symbol -> when a refresh saw it leave TRADING (clock seconds)

    def recently_left(self) -> frozenset[str]:
        """The symbols that left TRADING within ``LEFT_KEEP_S``; older ones are forgotten here (bounded)."""
        horizon = self.clock() - LEFT_KEEP_S
        self._left = {name: at for name, at in self._left.items() if at > horizon}
        return frozenset(self._left)

    def expand(self, info: dict[str, Any]) -> list[str]:
        """The concrete streams of the settings for this exchangeInfo. A TRADING symbol whose name cannot be a
        stream name is skipped, counted and warned about once, never a reason to stop (DESIGN §6: symbols may
        be non-ASCII since 2025-12, and a future listing may bring characters nobody expects)."""
        s = self.settings
        skipped: list[str] = []
        streams = stream_names.expand(s.streams, info, s.quote_assets, literal_retired=s.literal_ticker_arr,
                                      skipped=skipped)
        for symbol in skipped:
            if symbol not in self._skipped:
                self._skipped.add(symbol)
                metrics.SYMBOLS_SKIPPED.inc()
                log.warning("symbol %r skipped: its name cannot be spelled as a stream name", symbol,
                            extra={"symbol": symbol})
        return streams

    async def apply(self, info: dict[str, Any], publish: Publish, on_streams: OnStreams | None,
                    on_delisted: OnDelisted | None = None) -> None:
        """Publish changed symbols; remember delistings (and snapshot them); follow listings/delistings for
        per-symbol stream patterns."""
        changes = self.known.update(info)
        if changes.changed:
            await publish(self.known, changes.changed)
        now = self.clock()
        for name in changes.listed:
            self._left.pop(name, None)  # TRADING again: the TRADING-only snapshot lists it
            log.info("symbol listed", extra={"symbol": name})
        for name in changes.delisted:
            self._left[name] = now
            log.info("symbol delisted", extra={"symbol": name})
        self.recently_left()  # prune
        if on_delisted is not None and changes.delisted:
            await on_delisted(list(changes.delisted))
        if on_streams is not None and (changes.listed or changes.delisted) and stream_names.needs_exchange_info(
                self.settings.streams, self.settings.literal_ticker_arr):
            await on_streams(self.expand(info))

    async def follow(self, publish: Publish, on_streams: OnStreams, on_delisted: OnDelisted | None = None) -> None:
        """The refresh loop: forever, every ``exchange_info_refresh_s``."""
        while True:
            await asyncio.sleep(self.settings.exchange_info_refresh_s)
            try:
                info = await self.rest.exchange_info()
            except Exception as exc:  # keep streaming with the symbols we know
                log.warning("exchangeInfo refresh failed", extra={"reason": repr(exc)[:200]})
                continue
            try:
                await self.apply(info, publish, on_streams, on_delisted)
            except ConfigError as exc:  # the new stream set does not fit the connection budget: keep the old one
                log.error("exchangeInfo refresh not applied", extra={"reason": str(exc)})
            except FatalError:  # publishing met a fatal producer error: the worker must end, not refresh on
                raise
            except Exception:  # whatever a listing brings, the refresh loop and the streams go on
                log.exception("exchangeInfo refresh not applied")
