"""StreamSource and the exchange's signals, against the real local WebSocket server (tests/unit/ws_server.py):
``serverShutdown`` (make-before-break replacement), handshake refusals (451 slow and once-logged, 403/429/418
slow or Retry-After), and the connection-attempt budget under a flapping server."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections import defaultdict

import pytest

from ingest import metrics
from ingest.binance import connection
from ingest.binance.connection import StreamSource
from tests.unit.test_connection import Collector, reconnects, run, settings, start, stop, wait_until
from tests.unit.ws_server import FakeBinance


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels or {}) or 0.0


@pytest.mark.parametrize("combined", [True, False])
def test_server_shutdown_replaces_the_connection_before_it_breaks(combined):
    """Catches: the event handed to the pipeline (the Collector would fail on it: no symbol), no replacement
    (one connection only), break-then-make (no tick on both connections) and a missing reason label."""
    async def scenario():
        async with FakeBinance(interval_s=0.02) as server:
            got = Collector()
            source = StreamSource(settings(server, combined=combined), ["btcusdt@miniTicker"], got.on_frame,
                                  got.on_connected)
            before = (reconnects("server_shutdown"), sample("binance_ingest_ws_server_shutdowns_total"),
                      reconnects("error"))
            task = await start(source)
            await wait_until(lambda: len(got.ticks["BTCUSDT"]) >= 5)
            await server.server_shutdown()
            await wait_until(lambda: reconnects("server_shutdown") - before[0] == 1)
            await asyncio.sleep(0.2)
            open_after = len(server.open_connections())
            await stop(task)
        assert sample("binance_ingest_ws_server_shutdowns_total") - before[1] == 1
        assert reconnects("error") == before[2], "the event reached the pipeline or broke the connection"
        assert not any("serverShutdown" in frame for frame, _ in got.frames), "the event reached the pipeline"
        assert got.connection_ids() == ["ws0-1", "ws0-2"]
        assert open_after == 1, "the old connection was not closed by the worker"
        by_conn: dict[str, set[int]] = defaultdict(set)
        for frame, meta in got.frames:
            payload = json.loads(frame)
            by_conn[meta.connection_id].add(payload.get("data", payload)["E"])
        assert by_conn["ws0-1"] & by_conn["ws0-2"], "no overlap: the old connection closed before the new delivered"
        seen = sorted(set(got.ticks["BTCUSDT"]))
        assert seen == list(range(seen[0], seen[-1] + 1)), "a tick fell between the connections"

    run(scenario)


def test_server_shutdown_without_a_spare_slot_reconnects_at_once():
    async def scenario():
        async with FakeBinance() as server:
            got = Collector()
            source = StreamSource(settings(server, max_connections=1, backoff_initial_s=5.0, backoff_max_s=5.0,
                                           backoff_slow_s=5.0), ["btcusdt@miniTicker"], got.on_frame,
                                  got.on_connected)
            before = reconnects("server_shutdown")
            task = await start(source)
            await server.server_shutdown()
            await wait_until(lambda: len(got.connected) >= 2, within_s=3.0)  # no 5 s backoff in between
            await stop(task)
        assert reconnects("server_shutdown") - before == 1

    run(scenario)


def test_451_is_retried_slowly_logged_once_and_named_for_readiness(caplog):
    """Catches: 451 retried with the ordinary backoff (attempts 0.05-0.2 s apart), a warning/error line per
    attempt, no refusal state for /readyz, and a refusal that outlives the recovery."""
    retry_s = 0.6
    caplog.set_level(logging.INFO, logger="ingest")

    async def scenario():
        async with FakeBinance() as server:
            server.refuse_status, server.refuse_count = 451, 3
            got = Collector()
            source = StreamSource(settings(server, location_refused_retry_s=retry_s), ["btcusdt@miniTicker"],
                                  got.on_frame, got.on_connected)
            before = reconnects("http_451")
            task = asyncio.create_task(source.run())
            await wait_until(lambda: len(server.attempts) >= 1)
            await wait_until(lambda: source.refusal.refused)
            reason = source.refusal.reason()
            await wait_until(lambda: source.connected, within_s=10.0)
            attempts = list(server.attempts)
            await stop(task)
        assert "HTTP 451" in reason and "websocket" in reason
        assert reconnects("http_451") - before == 3
        assert len(attempts) == 4
        gaps = [b - a for a, b in itertools.pairwise(attempts)]
        assert all(gap >= retry_s - 0.01 for gap in gaps), f"451 retried too soon: {gaps}"
        assert not source.refusal.refused
        lines = [r for r in caplog.records if "refuses this location" in r.getMessage()]
        assert len(lines) == 1 and lines[0].levelno == logging.ERROR
        assert "refused with 451 by the test server" in lines[0].getMessage()
        assert not [r for r in caplog.records if "could not connect" in r.getMessage()]

    run(scenario)


@pytest.mark.parametrize(("status", "headers", "at_least"), [
    (403, {}, 0.3),  # slow: [slow/2, slow] = [0.3, 0.6], where the ordinary cap is 0.05
    (429, {}, 0.3),
    (429, {"Retry-After": "1"}, 1.0),
    (418, {}, 0.8),  # BAN_DEFAULT_S, patched below
])
def test_handshake_signals_slow_down_or_wait_the_retry_after(status, headers, at_least, monkeypatch):
    monkeypatch.setattr(connection, "BAN_DEFAULT_S", 0.8)

    async def scenario():
        async with FakeBinance() as server:
            server.refuse_status, server.refuse_count, server.refuse_headers = status, 1, headers
            got = Collector()
            source = StreamSource(settings(server, backoff_initial_s=0.01, backoff_max_s=0.05, backoff_slow_s=0.6),
                                  ["btcusdt@miniTicker"], got.on_frame, got.on_connected)
            before = reconnects(f"http_{status}")
            task = asyncio.create_task(source.run())
            await wait_until(lambda: source.connected)
            attempts = list(server.attempts)
            await stop(task)
        assert reconnects(f"http_{status}") - before == 1
        assert len(attempts) == 2 and attempts[1] - attempts[0] >= at_least - 0.01

    run(scenario)


def test_attempt_budget_holds_under_a_flapping_server():
    """Every handshake fails (HTTP 503, an ordinary error: backoff 10-20 ms) for 2.5 s: without the budget that is
    well over 50 attempts; with 4 per second, no second of the server's own clock sees a fifth."""
    async def scenario():
        async with FakeBinance() as server:
            server.refuse_status, server.refuse_count = 503, 10_000
            got = Collector()
            source = StreamSource(settings(server, backoff_initial_s=0.01, backoff_max_s=0.02,
                                           max_connection_attempts=4, connection_attempt_window_s=1.0),
                                  ["btcusdt@miniTicker"], got.on_frame, got.on_connected)
            waits = sample("binance_ingest_ws_connect_budget_waits_total")
            task = asyncio.create_task(source.run())
            await asyncio.sleep(2.5)
            server.refuse_count = 0
            await wait_until(lambda: source.connected, within_s=3.0)
            attempts = list(server.attempts)
            await stop(task)
        assert len(attempts) >= 10, f"not flapping: {len(attempts)} attempts"
        # attempt i and i+4 are at least one window apart (small slack: booking happens just before the handshake)
        assert all(attempts[i + 4] - attempts[i] >= 1.0 - 0.05 for i in range(len(attempts) - 4))
        assert sample("binance_ingest_ws_connect_budget_waits_total") > waits

    run(scenario)


def test_a_replacement_refused_with_451_is_retried_slowly_while_the_old_connection_serves():
    """serverShutdown, then the replacement's handshake gets 451: the old connection keeps delivering, the refusal
    is known (/readyz), and the next replacement attempt waits the 451 interval instead of the 1-5 s backoff."""
    retry_s = 0.6

    async def scenario():
        async with FakeBinance() as server:
            got = Collector()
            source = StreamSource(settings(server, location_refused_retry_s=retry_s), ["btcusdt@miniTicker"],
                                  got.on_frame, got.on_connected)
            before = reconnects("server_shutdown")
            task = await start(source)
            server.refuse_status, server.refuse_count = 451, 1
            first = len(server.attempts)
            await server.server_shutdown()
            await wait_until(lambda: source.refusal.refused)
            await wait_until(lambda: reconnects("server_shutdown") - before == 1, within_s=5.0)
            attempts = server.attempts[first:]
            refused_after = source.refusal.refused
            await stop(task)
        assert len(attempts) == 2 and attempts[1] - attempts[0] >= retry_s - 0.01, attempts
        assert not refused_after, "the successful replacement did not clear the refusal"
        assert got.connection_ids()[0] == "ws0-1" and "ws0-3" in got.connection_ids()

    run(scenario)
