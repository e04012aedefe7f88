"""Handover notes (ingest.handover): a released shard's note holds exactly its streams' last event times, and a
gained shard's notes seed the dedupe so the next owner's snapshot does not repeat them."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from ingest.coordination import shard_of
from ingest.dedupe import LastSeen
from ingest.handover import Handover, notes_for, seed_from

SHARDS = 12


def seen_with(**times: dict[str, int]) -> LastSeen:
    seen = LastSeen(("miniticker", "ticker"))
    for kind, symbols in times.items():
        seen.seed(kind, symbols)
    return seen


def test_notes_carry_each_released_shards_own_symbols_only():
    seen = seen_with(ticker={"BTCUSDT": 10, "ETHUSDT": 20}, miniticker={"BTCUSDT": 5, "BNBUSDT": 7})
    streams = ["btcusdt@ticker", "ethusdt@ticker", "!miniTicker@arr"]
    released = frozenset({shard_of("btcusdt@ticker", SHARDS), shard_of("!miniTicker@arr", SHARDS)})
    notes = notes_for(released, streams, SHARDS, seen)
    merged: dict[str, dict[str, int]] = {}
    for note in notes.values():
        for kind, symbols in note.items():
            merged.setdefault(kind, {}).update(symbols)
    expected_ticker = {"BTCUSDT": 10}
    if shard_of("ethusdt@ticker", SHARDS) in released:
        expected_ticker["ETHUSDT"] = 20
    assert merged["ticker"] == expected_ticker
    assert merged["miniticker"] == {"BTCUSDT": 5, "BNBUSDT": 7}  # the all-market stream's shard: every symbol
    assert notes_for(frozenset(), streams, SHARDS, seen) == {}


def test_seeding_keeps_the_newer_time_and_skips_what_another_version_wrote():
    seen = seen_with(ticker={"BTCUSDT": 50})
    merged = seed_from({3: {"ticker": {"BTCUSDT": 40, "ETHUSDT": 60, "BAD": "x"}, "futures": {"X": 1}},
                        4: {"miniticker": ["not", "a", "map"]}}, seen)
    assert seen.export()["ticker"] == {"BTCUSDT": 50, "ETHUSDT": 60}
    assert "futures" not in seen.export() and seen.export()["miniticker"] == {}
    assert set(merged) == {"ticker"}


def test_a_store_that_fails_costs_the_notes_not_the_handover():
    def fail(*_: object) -> None:
        raise OSError("broker gone")

    handover = Handover(SimpleNamespace(write_notes=fail, read_notes=fail), seen_with(ticker={"BTCUSDT": 1}),
                        SHARDS)
    released = frozenset({shard_of("btcusdt@ticker", SHARDS)})
    assert asyncio.run(handover.release(released, ["btcusdt@ticker"])) == 0
    assert asyncio.run(handover.receive(released)) == {}
