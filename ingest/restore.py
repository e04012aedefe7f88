"""Restoring state from REST ticker/24hr snapshots: after every (re)connect, and for shards a replica gains.

``ingest.binance.snapshot`` decides what to ask Binance for; this collaborator asks, keeps only what the
replica still owns when the answer comes (a shard released meanwhile is its next owner's), counts the
handover overlap, and hands the entries to the pipeline's one produce path. A failed snapshot is a warning:
the streams go on, and the next (re)connect tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ingest import metrics
from ingest.binance import snapshot
from ingest.binance.snapshot import Ticker24hr

log = logging.getLogger("ingest.worker")

Produce = Callable[[list[Any], set[str]], Awaitable[int]]
"""The pipeline's ``on_snapshot(entries, kinds)``: returns how many records were produced."""
Owned = Callable[[list[str]], list[str]]
"""The part of these streams this replica owns now (coordination), asked after the answer arrived."""
Left = Callable[[], frozenset[str]]
"""The symbols that left TRADING in the last 24 h (``Listings.recently_left``): an all-market snapshot asks for
them too, since ``symbolStatus=TRADING`` no longer returns their final state."""


class Snapshots:
    """Fetches and produces the snapshot of a set of streams."""

    def __init__(self, rest: Ticker24hr, produce: Produce, owned: Owned | None = None,
                 left: Left | None = None) -> None:
        self.rest = rest
        self.produce = produce
        self.owned = owned
        self.left = left

    async def restore(self, streams: list[str], why: str,
                      seeds: Mapping[str, Mapping[str, int]] | None = None) -> int:
        """Produce the ticker/24hr state of the symbols and kinds these streams carry (all TRADING symbols for
        an all-market stream); return the records produced. ``seeds`` are a previous owner's last event times:
        entries not newer are counted as handover overlap (the dedupe, seeded with them, drops them)."""
        if not streams:
            return 0
        left = self.left() if self.left is not None else frozenset()
        return await self._produce(snapshot.fetch(self.rest, streams, left), streams, why, seeds)

    async def restore_left(self, streams: list[str], symbols: list[str], why: str) -> int:
        """Produce the final state of symbols that just left TRADING, for the all-market streams among these:
        their last ticks may have been missed, and the next TRADING-only snapshot will not list them."""
        if not streams or not symbols:
            return 0
        return await self._produce(snapshot.fetch_left(self.rest, streams, symbols), streams, why, None)

    async def _produce(self, fetching: Awaitable[tuple[snapshot.Entries, int]], streams: list[str], why: str,
                       seeds: Mapping[str, Mapping[str, int]] | None) -> int:
        try:
            by_kind, failed = await fetching
        except Exception as exc:  # a failed snapshot must not take the stream down
            log.warning("snapshot failed", extra={"why": why, "reason": repr(exc)[:200]})
            return 0
        if self.owned is not None:
            by_kind = snapshot.restrict(by_kind, self.owned(streams))
        produced = 0
        for kind, entries in by_kind.items():
            if seeds:
                last = seeds.get(kind, {})
                metrics.HANDOVER_OVERLAP.inc(sum(
                    1 for entry in entries if isinstance(entry, dict)
                    and last.get(str(entry.get("symbol")), -1) >= (entry.get("closeTime") or 0)))
            produced += await self.produce(entries, {kind})
        log.info("snapshot produced", extra={"why": why, "records": produced, "failed_requests": failed})
        return produced
