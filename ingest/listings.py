"""Following the exchange's listings: exchangeInfo at start and every ``--exchange-info-refresh-s``.

Each exchangeInfo publishes the symbols that changed to the compacted symbols topic and, when the settings
use per-symbol stream patterns (``<symbol>@ticker`` for every TRADING symbol, or a retired all-market stream
served that way), re-derives the concrete streams so listings are subscribed and delistings dropped. A
refresh that fails keeps the symbols we know: streaming goes on.
"""

from __future__ import annotations

import asyncio
import logging
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


class Listings:
    """The exchange's symbols as last seen, and the concrete streams they make of the settings' patterns."""

    def __init__(self, settings: Settings, rest: RestClient) -> None:
        self.settings = settings
        self.rest = rest
        self.known = KnownSymbols()
        self._skipped: set[str] = set()  # symbols that cannot be stream names, warned about once

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

    async def apply(self, info: dict[str, Any], publish: Publish, on_streams: OnStreams | None) -> None:
        """Publish changed symbols; follow listings/delistings for per-symbol stream patterns."""
        changes = self.known.update(info)
        if changes.changed:
            await publish(self.known, changes.changed)
        for name in changes.listed:
            log.info("symbol listed", extra={"symbol": name})
        for name in changes.delisted:
            log.info("symbol delisted", extra={"symbol": name})
        if on_streams is not None and (changes.listed or changes.delisted) and stream_names.needs_exchange_info(
                self.settings.streams, self.settings.literal_ticker_arr):
            await on_streams(self.expand(info))

    async def follow(self, publish: Publish, on_streams: OnStreams) -> None:
        """The refresh loop: forever, every ``exchange_info_refresh_s``."""
        while True:
            await asyncio.sleep(self.settings.exchange_info_refresh_s)
            try:
                info = await self.rest.exchange_info()
            except Exception as exc:  # keep streaming with the symbols we know
                log.warning("exchangeInfo refresh failed", extra={"reason": repr(exc)[:200]})
                continue
            try:
                await self.apply(info, publish, on_streams)
            except ConfigError as exc:  # the new stream set does not fit the connection budget: keep the old one
                log.error("exchangeInfo refresh not applied", extra={"reason": str(exc)})
            except FatalError:  # publishing met a fatal producer error: the worker must end, not refresh on
                raise
            except Exception:  # whatever a listing brings, the refresh loop and the streams go on
                log.exception("exchangeInfo refresh not applied")
