"""Finished connections are freed at once by reference counting, not kept for the cyclic GC (the soak's
``ws_connection_objects`` gauge grew after the issue-14 split: every ended Connection sat in a reference cycle
through its tasks, its close exception's traceback, or a returned exception's traceback until a full GC).

The cyclic GC is disabled while the scenario runs: with it enabled, whether a cycle happened to be collected
would depend on allocation counts, and the test could pass on a leaky build. Counting without ``gc.collect()``
is the point: objects freed only by the cyclic GC are what made the gauge climb between collections."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

from ingest import metrics
from ingest.binance.connection import StreamSource
from tests.unit.test_connection import Collector, settings, stop, wait_until
from tests.unit.ws_server import FakeBinance

ROUNDS = 4
"""Each round ends five connections: a clean close, a TCP drop, a serverShutdown replacement, a refused
handshake and a stale (silent) one, so 20 finished connections in all."""
SLACK = 2
"""Besides the shard's current (and at most a replacement): the connection whose close exception the
supervisor still holds while it sleeps its backoff, and one whose reader is still winding down."""


def test_finished_connections_are_freed_without_the_cyclic_gc(monkeypatch: Any) -> None:
    created: list[weakref.ref[object]] = []
    track = metrics.track_connection

    def tracking(conn: object) -> None:
        created.append(weakref.ref(conn))
        track(conn)

    monkeypatch.setattr(metrics, "track_connection", tracking)

    def alive() -> int:
        return sum(ref() is not None for ref in created)

    async def scenario() -> None:
        async with FakeBinance() as server:
            got = Collector()
            source = StreamSource(settings(server), ["btcusdt@miniTicker", "ethusdt@miniTicker"], got.on_frame)
            task = asyncio.create_task(source.run())
            await wait_until(lambda: source.connected)
            for _ in range(ROUNDS):
                await server.close_all(1000)
                await wait_until(lambda: source.connected and len(server.open_connections()) == 1)
                server.drop_all()
                await wait_until(lambda: source.connected and len(server.open_connections()) == 1)
                await server.server_shutdown()
                await wait_until(lambda: source.connected and len(server.open_connections()) == 1)
                server.refuse_status, server.refuse_count = 503, 1
                await server.close_all(1000)
                await wait_until(lambda: server.refuse_count == 0)
                await wait_until(lambda: source.connected and len(server.open_connections()) == 1)
                server.silent = True
                await wait_until(lambda: not source.connected, within_s=10.0)
                server.silent = False
                await wait_until(lambda: source.connected and len(server.open_connections()) == 1, within_s=10.0)
            await asyncio.sleep(0.5)  # let the last readers and close handshakes end
            live_while_running = alive()
            await stop(task)
        assert len(created) >= 5 * ROUNDS + 1
        assert live_while_running <= 2 + SLACK, f"{live_while_running} of {len(created)} connections still alive"

    gc.collect()
    gc.disable()
    try:
        asyncio.run(asyncio.wait_for(scenario(), 60.0))
    finally:
        gc.enable()
