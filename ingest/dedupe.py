"""Per-symbol last-seen state: the one dedupe of the connector, on typed records before they are encoded.

Why: reconnect snapshots, rotation overlaps and handovers deliver tickers already produced; a record is fresh
only if its event time is newer than the last one produced for its (kind, symbol). ``export``/``seed`` are what
handover notes carry between workers (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ingest import metrics


class LastSeen:
    """Event time (ms) of the last record produced per kind and symbol."""

    def __init__(self, kinds: Sequence[str] = ("miniticker", "ticker")) -> None:
        self.times: dict[str, dict[str, int]] = {kind: {} for kind in kinds}

    def fresh(self, kind: str, items: Sequence[Any]) -> list[Any]:
        """The records (with ``symbol`` and ``event_time``) newer than the last seen of their symbol, in order;
        remembers them and counts the others in ``duplicates_suppressed_total``."""
        last = self.times[kind]
        seen = last.get
        out = []
        for item in items:
            event_time, symbol = item.event_time, item.symbol
            if event_time > seen(symbol, -1):
                last[symbol] = event_time
                out.append(item)
        if len(out) < len(items):
            metrics.DUPLICATES_SUPPRESSED.inc(len(items) - len(out))
        return out

    def get(self, kind: str) -> dict[str, int] | None:
        """The live symbol -> event time map of ``kind`` (read it, do not change it), None for an unknown kind."""
        return self.times.get(kind)

    def export(self) -> dict[str, dict[str, int]]:
        """A copy of the state, for handover notes."""
        return {kind: dict(times) for kind, times in self.times.items()}

    def seed(self, kind: str, times: Mapping[str, int]) -> None:
        """Merge what another worker produced: per symbol, the newer event time wins."""
        last = self.times.setdefault(kind, {})
        for symbol, event_time in times.items():
            if event_time > last.get(symbol, -1):
                last[symbol] = event_time

    def size(self) -> int:
        """Entries held (exported as ``symbol_state_entries``)."""
        return sum(len(times) for times in self.times.values())
