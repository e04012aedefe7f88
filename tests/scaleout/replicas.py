"""Helpers for the scale-out tests: coordinated replicas, who owns what, and per-symbol gaps in Kafka."""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tests.kafka_reading import RegistryDecoder, read_all
from tests.worker_fixture import WorkerProcess


def start_replica(worker_factory: Callable[..., WorkerProcess], sim: Any, prefix: str, streams: str,
                  *extra: str) -> WorkerProcess:
    """One ``ingest run --coordination kafka`` replica on the simulator; all replicas of a test share ``prefix``
    (and so the coordination topic and group)."""
    return worker_factory("--streams", streams, "--ws-url", sim.ws_url, "--rest-url", sim.http_url,
                          "--topic-prefix", prefix, "--coordination", "kafka", *extra)


def owner_and_standby(worker_factory: Callable[..., WorkerProcess], sim: Any, prefix: str,
                      stream: str) -> tuple[WorkerProcess, WorkerProcess]:
    """Two ready replicas of one stream: (the one that owns it, the one that owns nothing of it)."""
    a = start_replica(worker_factory, sim, prefix, stream)
    b = start_replica(worker_factory, sim, prefix, stream)
    a.wait_ready()
    b.wait_ready()
    wait_until(lambda: owned_stream_count(a) + owned_stream_count(b) == 1, 20, "one replica owning the stream")
    return (a, b) if owned_stream_count(a) == 1 else (b, a)


def readyz(worker: WorkerProcess) -> dict[str, Any]:
    try:
        _, body = worker.get("/readyz")
        return json.loads(body)
    except (OSError, ValueError):
        return {}


def owned_stream_count(worker: WorkerProcess) -> int:
    return int(readyz(worker).get("streams", 0))


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll until true; return the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


@dataclass(frozen=True)
class Tick:
    offset: int
    partition: int
    event_time: int
    source: str


def ticks_by_symbol(bootstrap: str, registry: str, topic: str) -> dict[str, list[Tick]]:
    """Every record of ``topic`` per key (symbol), in Kafka's order (partition offsets), for the symbols the
    streams carried (a REST snapshot also returns symbols that are not TRADING, which no stream ever updates)."""
    decoder = RegistryDecoder(registry)
    out: dict[str, list[Tick]] = defaultdict(list)
    for read in sorted(read_all(bootstrap, topic), key=lambda r: (r.partition, r.offset)):
        _, rec = decoder.decode(read.raw)
        assert read.key == rec["symbol"].encode(), "keyed by symbol"
        event_ms = int(rec["event_time"].timestamp() * 1000) if isinstance(rec["event_time"], datetime) \
            else rec["event_time"]
        out[rec["symbol"]].append(Tick(read.offset, read.partition, event_ms, rec["source"]))
    return {symbol: seq for symbol, seq in out.items() if any(t.source == "websocket" for t in seq)}


@dataclass(frozen=True)
class Gap:
    symbol: str
    seconds: float
    before: Tick
    after: Tick


def widest_gaps(ticks: dict[str, list[Tick]]) -> list[Gap]:
    """Per symbol, the widest event-time step between consecutive records, widest first."""
    gaps = []
    for symbol, seq in ticks.items():
        steps = [Gap(symbol, (b.event_time - a.event_time) / 1000.0, a, b) for a, b in itertools.pairwise(seq)]
        if steps:
            gaps.append(max(steps, key=lambda g: g.seconds))
    return sorted(gaps, key=lambda g: -g.seconds)


def out_of_order(ticks: dict[str, list[Tick]]) -> list[tuple[str, Tick, Tick]]:
    """Records whose event time goes backwards within their key (Kafka order): a handover must never do that."""
    return [(symbol, a, b) for symbol, seq in ticks.items() for a, b in itertools.pairwise(seq)
            if b.event_time < a.event_time]


def duplicates(ticks: dict[str, list[Tick]]) -> list[tuple[str, int]]:
    """(symbol, event time) pairs that are in Kafka more than once."""
    return [(symbol, t) for symbol, seq in ticks.items()
            for t, n in Counter(tick.event_time for tick in seq).items() if n > 1]
