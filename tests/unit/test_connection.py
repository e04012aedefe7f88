"""StreamSource against a real local WebSocket server (tests/unit/ws_server.py): delivery, reconnect reasons,
stale watchdog, make-before-break rotation, live SUBSCRIBE/UNSUBSCRIBE, frame size limit."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ingest import metrics
from ingest.binance import connection
from ingest.binance.connection import FrameMeta, StreamSource, classify_close
from ingest.config import ConfigError, Settings
from tests.unit.ws_server import FakeBinance

TEST_TIMEOUT_S = 20.0


def reconnects(reason: str) -> float:
    return metrics.REGISTRY.get_sample_value("binance_ingest_ws_reconnects_total", {"reason": reason}) or 0.0


def messages(label: str) -> float:
    return metrics.REGISTRY.get_sample_value("binance_ingest_ws_messages_total", {"stream": label}) or 0.0


class Collector:
    """Records every frame with its metadata; ticks[symbol] = event times seen, per connection too."""

    def __init__(self) -> None:
        self.frames: list[tuple[Any, FrameMeta]] = []
        self.connected: list[str] = []
        self.ticks: dict[str, list[int]] = defaultdict(list)

    async def on_frame(self, frame: bytes | str, meta: FrameMeta) -> None:
        self.frames.append((frame, meta))
        payload = json.loads(frame)
        data = payload.get("data", payload)
        self.ticks[data["s"]].append(data["E"])

    async def on_connected(self, connection_id: str) -> None:
        self.connected.append(connection_id)

    def connection_ids(self) -> list[str]:
        return list(dict.fromkeys(meta.connection_id for _, meta in self.frames))


def settings(server: FakeBinance, **overrides: Any) -> Settings:
    base = Settings(ws_url=server.url, stale_timeout_s=1.0, backoff_initial_s=0.05, backoff_max_s=0.2,
                    backoff_slow_s=0.3, rotate_after_s=3600.0)
    return dataclasses.replace(base, **overrides)


async def wait_until(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))


async def start(source: StreamSource) -> asyncio.Task[None]:
    task = asyncio.create_task(source.run())
    await wait_until(lambda: source.connected)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_delivers_frames_with_metadata_and_announces_connection():
    async def scenario():
        async with FakeBinance() as server:
            got = Collector()
            before = messages("@miniTicker")
            source = StreamSource(settings(server), ["BTCUSDT@miniTicker", "ethusdt@miniTicker"], got.on_frame,
                                  got.on_connected)
            task = await start(source)
            await wait_until(lambda: len(got.ticks["BTCUSDT"]) >= 3 and len(got.ticks["ETHUSDT"]) >= 3)
            await wait_until(lambda: got.connected)
            status = source.status()
            await stop(task)
        assert server.connections[0].path == "/stream?streams=btcusdt@miniTicker/ethusdt@miniTicker"
        frame, meta = got.frames[0]
        assert isinstance(frame, str)
        assert meta.connection_id == got.connected[0] == status[0]["id"]
        assert abs(meta.received_at - time.time()) < 10
        assert status[0]["streams"] == 2 and status[0]["state"] == "delivering"
        assert status[0]["connected_since"] is not None and status[0]["last_frame_at"] >= status[0]["connected_since"]
        assert messages("@miniTicker") - before >= 6
        assert not source.connected and source.status() == []

    run(scenario)


def test_raw_connection_counts_under_the_connection_label():
    async def scenario():
        async with FakeBinance() as server:
            got = Collector()
            before = messages("@miniTicker")
            source = StreamSource(settings(server, combined=False), ["btcusdt@miniTicker"], got.on_frame)
            task = await start(source)
            await wait_until(lambda: len(got.frames) >= 3)
            await stop(task)
        assert server.connections[0].path == "/ws/btcusdt@miniTicker"
        assert json.loads(got.frames[0][0])["s"] == "BTCUSDT"
        assert messages("@miniTicker") - before >= 3

    run(scenario)


@pytest.mark.parametrize(("code", "reason"), [(1008, "1008"), (1011, "1011"), (1001, "closed"), (None, "1006")])
def test_reconnects_after_close_and_counts_the_reason(code, reason, monkeypatch):
    async def scenario():
        async with FakeBinance() as server:
            got = Collector()
            # 1008 jumps to the upper half of the cap; keep the cap small so the test stays short
            source = StreamSource(settings(server, backoff_max_s=0.3), ["btcusdt@miniTicker"], got.on_frame,
                                  got.on_connected)
            before = reconnects(reason)
            task = await start(source)
            await wait_until(lambda: len(got.connected) == 1)
            if code is None:
                server.drop_all()
            else:
                await server.close_all(code, "test")
            await wait_until(lambda: len(got.connected) == 2)
            await stop(task)
        assert reconnects(reason) - before == 1
        assert len(server.connections) == 2
        assert got.connected == ["ws0-1", "ws0-2"]

    run(scenario)


def test_1008_waits_at_least_half_the_slow_cap():
    async def scenario():
        async with FakeBinance() as server:
            got = Collector()
            source = StreamSource(settings(server, backoff_initial_s=0.01, backoff_max_s=0.1, backoff_slow_s=1.0),
                                  ["btcusdt@miniTicker"], got.on_frame, got.on_connected)
            task = await start(source)
            await wait_until(lambda: len(got.connected) == 1)
            closed_at = time.monotonic()
            await server.close_all(1008, "too many")
            await wait_until(lambda: len(server.connections) == 2)
            waited = time.monotonic() - closed_at
            await stop(task)
        assert waited >= 0.5

    run(scenario)


def test_silence_is_detected_as_stale_and_the_connection_replaced():
    async def scenario():
        async with FakeBinance() as server:
            got = Collector()
            source = StreamSource(settings(server, stale_timeout_s=0.5), ["btcusdt@miniTicker"], got.on_frame,
                                  got.on_connected)
            before = reconnects("stale")
            task = await start(source)
            server.silent = True
            await wait_until(lambda: reconnects("stale") - before >= 1)
            assert not source.connected
            server.silent = False
            await wait_until(lambda: source.connected and len(got.connected) >= 2)
            await stop(task)
        assert reconnects("stale") - before >= 1

    run(scenario)


def test_rotation_makes_before_it_breaks_without_a_gap():
    async def scenario():
        async with FakeBinance(interval_s=0.02) as server:
            got = Collector()
            source = StreamSource(settings(server, rotate_after_s=0.6), ["btcusdt@miniTicker"], got.on_frame,
                                  got.on_connected)
            before = reconnects("rotation")
            task = await start(source)
            await wait_until(lambda: reconnects("rotation") - before >= 2, within_s=10)
            await asyncio.sleep(0.2)
            await stop(task)
        ids = got.connection_ids()
        assert ids[:3] == ["ws0-1", "ws0-2", "ws0-3"]
        # every tick between the first and the last one was seen at least once, across both swaps
        seen = sorted(set(got.ticks["BTCUSDT"]))
        assert seen == list(range(seen[0], seen[-1] + 1))
        # and the connections overlapped: some tick arrived on both the old and the new connection
        by_conn: dict[str, set[int]] = defaultdict(set)
        for frame, meta in got.frames:
            by_conn[meta.connection_id].add(json.loads(frame)["data"]["E"])
        assert by_conn["ws0-1"] & by_conn["ws0-2"]
        # at most one extra connection was ever open: the server saw them one after another
        assert len(server.connections) >= 3

    run(scenario)


def test_single_connection_rotation_is_break_then_make():
    async def scenario():
        async with FakeBinance() as server:
            got = Collector()
            source = StreamSource(settings(server, rotate_after_s=0.5, max_connections=1), ["btcusdt@miniTicker"],
                                  got.on_frame, got.on_connected)
            before = reconnects("rotation")
            task = await start(source)
            await wait_until(lambda: len(got.connected) >= 2)
            await stop(task)
        assert reconnects("rotation") - before >= 1
        by_conn: dict[str, set[int]] = defaultdict(set)
        for frame, meta in got.frames:
            by_conn[meta.connection_id].add(json.loads(frame)["data"]["E"])
        assert not by_conn["ws0-1"] & by_conn["ws0-2"]  # no overlap: the old one closed first

    run(scenario)


def test_set_streams_subscribes_and_unsubscribes_on_the_live_connection():
    async def scenario():
        async with FakeBinance() as server:
            got = Collector()
            source = StreamSource(settings(server), ["btcusdt@miniTicker"], got.on_frame, got.on_connected)
            task = await start(source)
            await source.set_streams(["btcusdt@miniTicker", "ethusdt@miniTicker", "bnbusdt@ticker"])
            await wait_until(lambda: got.ticks["ETHUSDT"] and got.ticks["BNBUSDT"])
            await source.set_streams(["ethusdt@miniTicker"])
            n_btc = len(got.ticks["BTCUSDT"])
            await asyncio.sleep(0.2)
            status = source.status()
            subscribed = metrics.REGISTRY.get_sample_value("binance_ingest_ws_subscribed_streams")
            await stop(task)
        assert len(server.connections) == 1, "no reconnect for a subscription change"
        methods = [(r["method"], r["params"]) for r in server.connections[0].requests]
        assert methods == [("SUBSCRIBE", ["ethusdt@miniTicker", "bnbusdt@ticker"]),
                           ("UNSUBSCRIBE", ["btcusdt@miniTicker", "bnbusdt@ticker"])]
        assert len(got.ticks["BTCUSDT"]) - n_btc <= 2  # at most frames already in flight
        assert status[0]["streams"] == 1 and subscribed == 1
        assert source.streams == ["ethusdt@miniTicker"]

    run(scenario)


def test_set_streams_opens_a_new_connection_when_shards_are_full():
    async def scenario():
        async with FakeBinance() as server:
            got = Collector()
            source = StreamSource(settings(server, max_streams_per_connection=2, max_connections=3),
                                  ["aaausdt@miniTicker", "bbbusdt@miniTicker"], got.on_frame, got.on_connected)
            task = await start(source)
            await source.set_streams(["aaausdt@miniTicker", "bbbusdt@miniTicker", "cccusdt@miniTicker"])
            await wait_until(lambda: source.connected and len(source.status()) == 2)
            await wait_until(lambda: bool(got.ticks["CCCUSDT"]))
            with pytest.raises(ConfigError, match="need 3 connections"):
                await source.set_streams([f"s{i}usdt@miniTicker" for i in range(5)])
            await stop(task)
        assert [c.path for c in server.connections] == ["/stream?streams=aaausdt@miniTicker/bbbusdt@miniTicker",
                                                        "/stream?streams=cccusdt@miniTicker"]

    run(scenario)


def test_many_streams_go_partly_into_the_url_and_the_rest_by_paced_subscribe():
    async def scenario():
        async with FakeBinance(interval_s=0.2) as server:
            got = Collector()
            names = [f"sym{i:04d}usdt@miniTicker" for i in range(500)]
            source = StreamSource(settings(server), names, got.on_frame, got.on_connected)
            task = await start(source)
            await wait_until(lambda: len(got.ticks) == 500)
            await stop(task)
        side = server.connections[0]
        assert len(side.path) < 2000
        subscribed = [s for r in side.requests for s in r["params"]]
        assert len(side.path.split("/")) - 1 + len(subscribed) == 500
        assert all(len(r["params"]) <= 200 for r in side.requests) and len(side.requests) >= 2

    run(scenario)


def test_refused_subscribe_reconnects_with_the_full_list():
    async def scenario():
        async with FakeBinance() as server:
            got = Collector()
            source = StreamSource(settings(server), ["btcusdt@miniTicker"], got.on_frame, got.on_connected)
            task = await start(source)
            server.refuse_subscribe = True
            await source.set_streams(["btcusdt@miniTicker", "ethusdt@miniTicker"])
            server.refuse_subscribe = False
            await wait_until(lambda: bool(got.ticks["ETHUSDT"]))
            await stop(task)
        assert server.connections[-1].path == "/stream?streams=btcusdt@miniTicker/ethusdt@miniTicker"

    run(scenario)


def test_frames_above_twice_the_limit_are_refused_by_the_socket():
    async def scenario():
        async with FakeBinance() as server:
            got = Collector()
            source = StreamSource(settings(server, max_frame_bytes=1000), ["btcusdt@miniTicker"], got.on_frame,
                                  got.on_connected)
            before = reconnects("closed")
            task = await start(source)
            filler = "x" * 1500  # between 1x and 2x: handed to the parser as is
            await server.send_raw(json.dumps({"stream": "btcusdt@miniTicker", "data": {"s": "BIG", "E": 0,
                                                                                      "pad": filler}}))
            await wait_until(lambda: bool(got.ticks["BIG"]))
            await server.send_raw("y" * 2500)  # above 2x: websockets closes with 1009
            await wait_until(lambda: len(got.connected) >= 2)
            await stop(task)
        assert reconnects("closed") - before == 1

    run(scenario)


def test_healthy_connection_resets_the_backoff(monkeypatch):
    monkeypatch.setattr(connection, "HEALTHY_AFTER_S", 0.2)

    async def scenario():
        async with FakeBinance() as server:
            got = Collector()
            source = StreamSource(settings(server), ["btcusdt@miniTicker"], got.on_frame, got.on_connected)
            task = await start(source)
            shard = source._shards[0]
            shard.backoff.attempt = 5  # as if it had failed a lot before
            await asyncio.sleep(0.3)
            await server.close_all(1011)
            await wait_until(lambda: len(got.connected) >= 2)
            attempts = shard.backoff.attempt
            await stop(task)
        assert attempts == 1  # reset, then one delay drawn

    run(scenario)


def test_unsupported_stream_and_impossible_split_fail_at_construction():
    s = Settings(max_streams_per_connection=2, max_connections=2)
    with pytest.raises(ConfigError, match="unsupported stream"):
        StreamSource(s, ["btcusdt@depth"], Collector().on_frame)
    with pytest.raises(ConfigError, match="only 1 may be used"):
        StreamSource(s, ["a1@ticker", "b1@ticker", "c1@ticker"], Collector().on_frame)


def test_classify_close_of_keepalive_timeout_is_stale():
    from websockets.exceptions import ConnectionClosedError
    from websockets.frames import Close

    assert classify_close(ConnectionClosedError(None, Close(1011, "keepalive ping timeout"), None)) == "stale"
    assert classify_close(ConnectionClosedError(None, None, None)) == "1006"
    assert classify_close(ConnectionClosedError(Close(1008, "x"), None, None)) == "1008"
    assert classify_close(ConnectionClosedError(Close(4000, "x"), None, None)) == "closed"
    assert classify_close(OSError("refused")) == "error"
