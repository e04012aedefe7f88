"""Handover notes between coordinated replicas (``--coordination kafka``).

When a shard moves, its next owner restores it from a REST snapshot, which may repeat the last tickers the
previous owner produced. The previous owner therefore writes a note per released shard: the event time of the
last record it produced per (kind, symbol) of the shard's streams (``LastSeen.export``). The next owner seeds
its dedupe with the notes (``LastSeen.seed``) before the snapshot, so those tickers are not produced twice.
A note that cannot be written or read costs duplicates, never the handover itself.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from ingest.binance import streams as stream_names
from ingest.coordination import shard_of
from ingest.dedupe import LastSeen

log = logging.getLogger("ingest.worker")

Notes = dict[int, dict[str, dict[str, int]]]
"""shard -> kind -> symbol -> event time (ms) of the last record produced."""


class NoteStore(Protocol):
    """Where notes live between owners (``ShardCoordinator``: a compacted Kafka topic)."""

    def write_notes(self, notes: Notes) -> int: ...

    def read_notes(self, shards: frozenset[int]) -> Notes: ...


def notes_for(released: frozenset[int], streams: list[str], shards: int, seen: LastSeen) -> Notes:
    """Per released shard: the last event time per (kind, symbol) of its streams (an all-market stream's shard
    gets every symbol of its kind). Shards with nothing produced get no note."""
    last = seen.export()
    notes: Notes = {}
    for name in streams:
        shard = shard_of(name, shards)
        if shard not in released:
            continue
        kind = stream_names.kind(name)
        times = last.get(kind, {})
        note = notes.setdefault(shard, {}).setdefault(kind, {})
        if name in stream_names.ALL_MARKET:
            note.update(times)
        elif (symbol := stream_names.symbol(name)) in times:
            note[symbol] = times[symbol]
    return {shard: note for shard, note in notes.items() if any(note.values())}


def seed_from(notes: Notes, seen: LastSeen) -> dict[str, dict[str, int]]:
    """Seed the dedupe with the previous owners' notes; return the merged seeds per kind. Entries of unknown
    kinds or of the wrong type (a note written by another version) are skipped."""
    merged: dict[str, dict[str, int]] = {}
    for note in notes.values():
        for kind, symbols in note.items():
            if seen.get(kind) is None or not isinstance(symbols, dict):
                continue
            seen.seed(kind, {symbol: ms for symbol, ms in symbols.items() if isinstance(ms, int)})
            merged.setdefault(kind, {}).update(symbols)
    if merged:
        log.info("handover notes applied", extra={"symbols": sum(len(v) for v in merged.values())})
    return merged


class Handover:
    """Writes notes for released shards and applies the notes of gained ones."""

    def __init__(self, store: NoteStore, seen: LastSeen, shards: int) -> None:
        self.store = store
        self.seen = seen
        self.shards = shards

    async def release(self, lost: frozenset[int], streams: list[str]) -> int:
        """Write the notes of the released shards; return how many were written (0 on failure)."""
        notes = notes_for(lost, streams, self.shards, self.seen)
        if not notes:
            return 0
        try:
            return await asyncio.to_thread(self.store.write_notes, notes)
        except Exception as exc:
            log.warning("handover notes not written", extra={"reason": repr(exc)[:200]})
            return 0

    async def receive(self, gained: frozenset[int]) -> dict[str, dict[str, int]]:
        """Read and apply the notes of the gained shards; the merged seeds per kind ({} without notes)."""
        try:
            notes = await asyncio.to_thread(self.store.read_notes, gained)
        except Exception as exc:
            log.warning("handover notes not read", extra={"reason": repr(exc)[:200]})
            return {}
        return seed_from(notes, self.seen)
