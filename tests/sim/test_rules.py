"""Binance's rules, enforced by the simulator: pings, lifetime, message rate, streams, connections, weight."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from tests.sim.wsclient import ignore_pings, recv_json, recv_until_closed, run
from tests.sim_fixture import EXCHANGE_INFO_EXCERPT


def test_server_pings_and_a_client_that_answers_stays(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.2, ping_interval=0.3, pong_timeout=0.5)

    async def scenario() -> None:
        async with websockets.connect(sim.ws_url + "/ws/!miniTicker@arr") as ws:
            deadline = asyncio.get_running_loop().time() + 2.0
            while asyncio.get_running_loop().time() < deadline:
                await recv_json(ws)
            assert ws.close_code is None

    run(scenario())
    assert sim.stats()["pings_sent"] >= 4


def test_client_that_ignores_pings_is_dropped(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.2, ping_interval=0.3, pong_timeout=0.5)

    async def scenario() -> int | None:
        async with websockets.connect(sim.ws_url + "/ws/!miniTicker@arr", ping_interval=None) as ws:
            ignore_pings(ws)
            await recv_until_closed(ws, wait=10)
            return ws.close_code

    assert run(scenario()) == 1011
    closed = sim.connections()["closed"]
    assert closed[-1]["close_reason"] == "pong timeout"


def test_connection_closed_after_max_lifetime(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.2, max_lifetime=1.5)

    async def scenario() -> tuple[int | None, float]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        async with websockets.connect(sim.ws_url + "/ws/!miniTicker@arr") as ws:
            frames = await recv_until_closed(ws, wait=10)
            assert frames
            return ws.close_code, loop.time() - start

    code, lived = run(scenario())
    assert code == 1001
    assert lived >= 1.4  # not before its lifetime
    assert sim.connections()["closed"][-1]["close_reason"] == "maximum connection lifetime reached"


def test_concurrent_connection_rule_when_turned_on_sixth_gets_1008(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.5, max_connections_per_ip=5)

    async def scenario() -> None:
        url = sim.ws_url + "/ws/!miniTicker@arr"
        clients = [await websockets.connect(url) for _ in range(5)]
        try:
            sixth = await websockets.connect(url)
            await recv_until_closed(sixth, wait=5)
            assert sixth.close_code == 1008
            for ws in clients:  # the five others are unaffected
                await recv_json(ws)
            await clients[0].close()
            await asyncio.sleep(0.2)
            seventh = await websockets.connect(url)  # a slot was freed
            assert isinstance(await recv_json(seventh), list)
            await seventh.close()
        finally:
            for ws in clients:
                await ws.close()

    run(scenario())
    assert sim.stats()["connections_rejected"] == {"per_address_limit": 1}


def test_no_concurrent_connection_limit_by_default(sim_factory) -> None:
    """Binance documents no per-IP concurrent limit; the rule is off unless a test asks for it."""
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.5)

    async def scenario() -> None:
        clients = [await websockets.connect(sim.ws_url + "/ws/!miniTicker@arr") for _ in range(8)]
        try:
            for ws in clients:
                assert isinstance(await recv_json(ws), list)
        finally:
            for ws in clients:
                await ws.close()

    run(scenario())
    assert sim.stats()["connections_rejected"] == {}


def test_connection_attempts_over_the_window_get_http_429(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.5, max_connection_attempts=4,
                      connection_attempt_window=3)

    async def scenario() -> None:
        for _ in range(4):  # attempts, not open connections: each one is closed right away
            async with websockets.connect(sim.ws_url + "/ws"):
                pass
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets.connect(sim.ws_url + "/ws/!miniTicker@arr")
        response = info.value.response
        assert response.status_code == 429 and json.loads(response.body)["code"] == -1003
        assert 1 <= int(response.headers["Retry-After"]) <= 3
        await asyncio.sleep(3.5)  # every attempt so far, the refused one too, has left the 3 s window
        async with websockets.connect(sim.ws_url + "/ws/!miniTicker@arr") as ws:
            assert isinstance(await recv_json(ws), list)

    run(scenario())
    stats = sim.stats()
    assert stats["handshake_attempts"] == {"total": 6, "127.0.0.1": 6}
    assert stats["handshakes_refused"] == {"total": 1, "429": 1}
    assert stats["handshakes_refused_by_reason"] == {"attempt_limit": 1}
    assert stats["connections_total"] == 5


def test_default_attempt_limit_is_binances_300_per_5_minutes(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=5)

    async def scenario() -> int:
        refused_at = 0
        for attempt in range(1, 302):
            try:
                ws = await websockets.connect(sim.ws_url + "/ws")
            except websockets.InvalidStatus as exc:
                assert exc.response.status_code == 429
                refused_at = attempt
                break
            await ws.close()
        return refused_at

    assert run(scenario(), timeout=120) == 301
    assert sim.stats()["handshake_attempts"]["127.0.0.1"] == 301


def test_more_than_five_messages_per_second_closes_with_1008(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=5)

    async def scenario() -> tuple[list, int | None]:
        async with websockets.connect(sim.ws_url + "/ws") as ws:
            for i in range(6):
                await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
            frames = await recv_until_closed(ws, wait=5)
            return [json.loads(f) for f in frames], ws.close_code

    replies, code = run(scenario())
    assert [r["id"] for r in replies] == [0, 1, 2, 3, 4]
    assert code == 1008


def test_five_messages_per_second_are_fine(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=5)

    async def scenario() -> list:
        async with websockets.connect(sim.ws_url + "/ws") as ws:
            replies = []
            for i in range(10):
                await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
                replies.append(await recv_json(ws))
                await asyncio.sleep(0.25)
            return replies

    assert len(run(scenario())) == 10


def test_pings_from_the_client_count_toward_the_message_limit(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=5)

    async def scenario() -> tuple[int, int | None, str | None]:
        async with websockets.connect(sim.ws_url + "/ws", ping_interval=None) as ws:
            answered = 0
            for _ in range(5):  # five pings in a second are within the limit
                await asyncio.wait_for(await ws.ping(), 5)
                answered += 1
            await ws.ping()  # the sixth within the same second
            await recv_until_closed(ws, wait=5)
            return answered, ws.close_code, ws.close_reason

    answered, code, reason = run(scenario())
    assert answered == 5 and code == 1008 and "pings and pongs count" in (reason or "")
    assert sim.stats()["control_frames_received"] == 6


def test_pongs_and_messages_share_the_limit(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=5)

    async def scenario() -> tuple[list, int | None]:
        async with websockets.connect(sim.ws_url + "/ws", ping_interval=None) as ws:
            for _ in range(3):
                await ws.pong(b"unsolicited")  # allowed by Binance, but counted
            for i in range(3):
                await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
            frames = await recv_until_closed(ws, wait=5)
            return [json.loads(f) for f in frames], ws.close_code

    replies, code = run(scenario())
    assert [r["id"] for r in replies] == [0, 1] and code == 1008


def test_at_most_1024_streams_per_connection(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=5)
    streams = [f"sym{i}usdt@miniTicker" for i in range(1025)]

    async def scenario() -> None:
        async with websockets.connect(sim.ws_url + "/stream?streams=" + "/".join(streams)) as ws:
            await recv_until_closed(ws, wait=5)
            assert ws.close_code == 1008
        async with websockets.connect(sim.ws_url + "/stream?streams=" + "/".join(streams[:1024])) as ws:
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}))
            assert len((await recv_json(ws))["result"]) == 1024
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": [streams[1024]], "id": 2}))
            reply = await recv_json(ws)
            assert reply["id"] == 2 and reply["code"] == 2

    run(scenario())


def test_rest_weight_header_429_then_418(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=5, rest_weight_limit=45,
                      rest_weight_window=60, rest_ban_after=2, rest_ban_seconds=30)
    used = []
    for _ in range(2):  # exchangeInfo weighs 20
        status, headers, _ = sim.request("/api/v3/exchangeInfo")
        assert status == 200
        used.append(int(headers["X-MBX-USED-WEIGHT-1M"]))
    assert used == [20, 40]
    status, headers, body = sim.request("/api/v3/exchangeInfo")
    assert status == 429 and int(headers["Retry-After"]) >= 1 and body["code"] == -1003
    assert sim.request("/api/v3/ticker/price", {"symbol": "BTCUSDT"})[0] == 200  # weight 2 still fits
    assert sim.request("/api/v3/exchangeInfo")[0] == 429
    status, headers, body = sim.request("/api/v3/exchangeInfo")  # keeps going after two 429s: banned
    assert status == 418 and 1 <= int(headers["Retry-After"]) <= 30 and "banned" in body["msg"]
    assert sim.request("/api/v3/ticker/price", {"symbol": "BTCUSDT"})[0] == 418  # everything, while banned
    assert sim.stats()["rest_status"] == {"200": 3, "429": 2, "418": 2}


def test_rest_weight_window_resets(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=5, rest_weight_limit=20, rest_weight_window=1)
    statuses = []
    for _ in range(3):
        statuses.append(sim.request("/api/v3/exchangeInfo")[0])
        statuses.append(sim.request("/api/v3/exchangeInfo")[0])
        asyncio.run(asyncio.sleep(1.05))
    assert statuses.count(200) == 3 and statuses.count(429) == 3
