"""Faults on demand through the control API (and --fault), with the sent-log and stats accounting."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest
import websockets

from tests.sim.wsclient import recv_json, recv_text, recv_until_closed, run
from tests.sim_fixture import EXCHANGE_INFO_EXCERPT

pytestmark = pytest.mark.faults


@pytest.mark.parametrize("code", [1006, 1008, 1011])
def test_close_codes(sim_factory, code: int) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.2)

    async def scenario() -> int | None:
        async with websockets.connect(sim.ws_url + "/ws/!miniTicker@arr") as ws:
            await recv_json(ws)
            sim.fault("close", code=code)
            await recv_until_closed(ws, wait=10)
            return ws.close_code

    assert run(scenario()) == code  # 1006: no close frame at all, the TCP connection was dropped
    assert sim.stats()["closes"] == {str(code): 1}


def test_close_one_connection_by_id(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.2)

    async def scenario() -> None:
        async with websockets.connect(sim.ws_url + "/ws/!miniTicker@arr") as a, \
                websockets.connect(sim.ws_url + "/ws/!miniTicker@arr") as b:
            await recv_json(a)
            await recv_json(b)
            ids = sorted(c["id"] for c in sim.connections()["open"])
            assert sim.fault("close", code=1011, conn=ids[0])["connections"] == [ids[0]]
            await recv_until_closed(a, wait=5)
            assert a.close_code == 1011
            await recv_json(b)

    run(scenario())


def test_silence_stops_frames_and_pongs_then_resumes(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.1)

    async def scenario() -> None:
        async with websockets.connect(sim.ws_url + "/ws/!miniTicker@arr", ping_interval=None) as ws:
            await recv_json(ws)
            sim.fault("silence", seconds=2)
            await asyncio.sleep(0.3)
            while True:  # frames queued before the fault may still be in the socket buffer
                try:
                    await recv_text(ws, wait=0.3)
                except TimeoutError:
                    break
            pong = await ws.ping()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(asyncio.shield(pong), 1.0)
            with pytest.raises(TimeoutError):
                await recv_text(ws, wait=0.2)
            await asyncio.wait_for(pong, 5)  # answered once the silence ends
            assert isinstance(await recv_json(ws), list)

    run(scenario())
    assert sim.stats()["frames_dropped"]["silence"] >= 10


def test_slow_frames(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.05)

    async def scenario() -> list[float]:
        async with websockets.connect(sim.ws_url + "/ws/!miniTicker@arr") as ws:
            await recv_json(ws)
            sim.fault("slow", delay_ms=400, seconds=5)
            loop = asyncio.get_running_loop()
            await recv_json(ws)  # may have been in flight already
            stamps = []
            for _ in range(3):
                await recv_json(ws)
                stamps.append(loop.time())
            return [b - a for a, b in itertools.pairwise(stamps)]

    gaps = run(scenario())
    assert all(gap >= 0.3 for gap in gaps), gaps  # 20 frames/s became at most 2.5 frames/s


@pytest.mark.parametrize("kind", ["invalid_json", "wrong_types", "missing_fields", "oversized", "invalid_utf8",
                                  "excess_decimals"])
def test_malformed_frames(sim_factory, kind: str) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=5)

    async def scenario() -> str | bytes | int | None:
        async with websockets.connect(sim.ws_url + "/ws/!miniTicker@arr", max_size=None) as ws:
            await recv_json(ws, wait=10)
            sim.fault("malformed", kind=kind, count=1)
            if kind == "invalid_utf8":
                await recv_until_closed(ws, wait=5)  # the client refuses a text frame that is not UTF-8:
                return ws.protocol.close_sent.code  # it fails the connection with 1007 (invalid data)
            return await recv_text(ws)

    got = run(scenario())
    if kind == "invalid_utf8":
        assert got == 1007
    elif kind == "invalid_json":
        with pytest.raises(json.JSONDecodeError):
            json.loads(got)
    elif kind == "oversized":
        assert len(got) > 2 * 1024 * 1024 and json.loads(got)[0]["e"] == "24hrMiniTicker"
    else:
        ticker = json.loads(got)[0]
        if kind == "wrong_types":
            assert isinstance(ticker["c"], float) and isinstance(ticker["E"], str)
        elif kind == "missing_fields":
            assert "c" not in ticker and "v" not in ticker and "s" in ticker
        else:
            assert len(ticker["c"].split(".")[1]) > 30
    stats = sim.stats()
    assert stats["malformed_sent"] == {"total": 1, kind: 1}
    faults = [r for r in sim.sent_records() if "fault" in r]
    assert [(f["fault"], f["kind"]) for f in faults] == [("malformed", kind)]


def test_duplicate_frames_and_sent_log(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.3)

    async def scenario() -> list[str]:
        async with websockets.connect(sim.ws_url + "/stream?streams=!miniTicker@arr") as ws:
            await recv_text(ws)
            sim.fault("duplicate", count=2)
            return [await recv_text(ws) for _ in range(6)]

    frames = run(scenario())
    repeated = [a for a, b in itertools.pairwise(frames) if a == b]
    assert len(repeated) == 2
    stats = sim.stats()
    assert stats["duplicates_sent"] == 2
    records = sim.sent_records()
    dup_lines = [r for r in records if r.get("fault") == "duplicate"]
    assert len(dup_lines) == 2 and dup_lines[0]["stream"] == "!miniTicker@arr"
    tickers = [r for r in records if "fault" not in r]
    assert len(tickers) == stats["tickers_sent"]["total"]  # each ticker once; duplicates apart
    keys = [(r["symbol"], r["E"]) for r in tickers]
    assert len(keys) == len(set(keys))
    first = tickers[0]
    assert first["stream"] == "!miniTicker@arr" and first["kind"] == "miniticker" and first["conn"] >= 1
    assert first["data"]["s"] == first["symbol"] and first["data"]["E"] == first["E"]


def test_sent_log_equals_what_the_client_received(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.1, serve_retired_streams=True)

    async def scenario() -> list[dict]:
        async with websockets.connect(sim.ws_url + "/ws/!ticker@arr") as ws:
            received = []
            for _ in range(10):
                received.extend(await recv_json(ws))
            return received

    received = run(scenario())
    sim.wait_for(lambda s: s["connections_open"] == 0)
    logged = [r["data"] for r in sim.sent_records() if r.get("kind") == "ticker"]
    assert logged[: len(received)] == received


def test_listing_and_delisting_follow_in_exchange_info_and_stream(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.1)

    def statuses() -> dict[str, str]:
        return {s["symbol"]: s["status"] for s in sim.request("/api/v3/exchangeInfo")[2]["symbols"]}

    async def symbols_in_next_arrays(ws, n: int = 3) -> set[str]:
        for _ in range(2):  # skip frames that may have been queued before the change
            await recv_json(ws)
        seen: set[str] = set()
        for _ in range(n):
            seen |= {t["s"] for t in await recv_json(ws)}
        return seen

    async def scenario() -> None:
        async with websockets.connect(sim.ws_url + "/ws/!miniTicker@arr") as ws:
            assert "NEWUSDT" not in await symbols_in_next_arrays(ws)
            sim.listing("NEWUSDT", "NEW", "USDT")
            assert statuses()["NEWUSDT"] == "TRADING"
            assert "NEWUSDT" in await symbols_in_next_arrays(ws)
            sim.delisting("BTCUSDT")
            assert statuses()["BTCUSDT"] == "BREAK"
            assert "BTCUSDT" not in await symbols_in_next_arrays(ws)

    run(scenario())
    ticker = sim.request("/api/v3/ticker/24hr", {"symbol": "NEWUSDT"})[2]
    assert ticker["symbol"] == "NEWUSDT" and ticker["lastPrice"].endswith("0")  # USDT precision 8, tick 0.01


@pytest.mark.parametrize("status", [429, 418, 451, 403, 500, 503])
def test_rest_faults(sim_factory, status: int) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=5)
    sim.fault("rest", status=status, count=2, retry_after=7)
    first = sim.request("/api/v3/ticker/price", {"symbol": "BTCUSDT"})
    second = sim.request("/api/v3/exchangeInfo")
    third = sim.request("/api/v3/ticker/price", {"symbol": "BTCUSDT"})
    assert first[0] == second[0] == status and third[0] == 200
    if status in (418, 429):
        assert first[1]["Retry-After"] == "7"
    if status == 403:  # the CDN's WAF page: HTML, no Binance weight header
        assert first[1]["Content-Type"].startswith("text/html") and "X-MBX-USED-WEIGHT-1M" not in first[1]
        return
    assert "X-MBX-USED-WEIGHT-1M" in first[1]
    if status == 451:
        assert "restricted location" in first[2]["msg"]


def test_fault_from_the_command_line(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.2, fault=["close:code=1011,at=1.0"])

    async def scenario() -> int | None:
        async with websockets.connect(sim.ws_url + "/ws/!miniTicker@arr") as ws:
            await recv_until_closed(ws, wait=10)
            return ws.close_code

    assert run(scenario()) == 1011


def test_bad_fault_request_is_400(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=5)
    status, _, body = sim.request("/_sim/fault", {"type": "explode"}, method="POST")
    assert status == 400 and "explode" in body["error"]
    status, _, body = sim.request("/_sim/fault", {"type": "malformed", "kind": "nope"}, method="POST")
    assert status == 400


@pytest.mark.parametrize("combined", [False, True])
def test_server_shutdown_announces_keeps_streaming_then_closes(sim_factory, combined: bool) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.1)
    path = "/stream?streams=!miniTicker@arr" if combined else "/ws/!miniTicker@arr"

    async def scenario() -> tuple[list, float, float, int | None]:
        loop = asyncio.get_running_loop()
        async with websockets.connect(sim.ws_url + path) as ws:
            first = await recv_json(ws)
            applied = sim.fault("server_shutdown", grace=1.5)
            start = loop.time()
            frames = [first] + [json.loads(f) for f in await recv_until_closed(ws, wait=10)]
            return frames, start, loop.time(), ws.close_code, applied

    frames, start, end, code, applied = run(scenario())
    assert len(applied["connections"]) == 1
    payloads = [f["data"] if combined else f for f in frames]
    events = [f for f, p in zip(frames, payloads, strict=True) if isinstance(p, dict) and p["e"] == "serverShutdown"]
    assert len(events) == 1
    event = events[0]
    if combined:
        assert event["stream"] == "!serverShutdown" and set(event["data"]) == {"e", "E"}
    else:
        assert set(event) == {"e", "E"}
    after = frames[frames.index(event) + 1:]
    assert len(after) >= 5  # 1.5 s of 0.1 s arrays after the announcement: it keeps streaming
    assert code == 1001 and end - start >= 1.4
    stats = sim.stats()
    assert stats["server_shutdowns_sent"] == 1 and stats["closes"] == {"1001": 1}
    assert stats["tickers_sent"]["total"] == sum(len(f["data"] if combined else f) for f in frames
                                                 if f is not event)  # the event is not a ticker
    records = sim.sent_records()
    assert [r["fault"] for r in records if "fault" in r] == ["server_shutdown"]
    assert all(r.get("kind") == "miniticker" for r in records if "fault" not in r)
    assert sim.connections()["closed"][-1]["close_reason"] == "server shutdown"


def test_server_shutdown_one_connection_by_id(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.2)

    async def scenario() -> None:
        async with websockets.connect(sim.ws_url + "/ws/!miniTicker@arr") as a, \
                websockets.connect(sim.ws_url + "/ws/!miniTicker@arr") as b:
            await recv_json(a)
            await recv_json(b)
            ids = sorted(c["id"] for c in sim.connections()["open"])
            assert sim.fault("server_shutdown", conn=ids[1], grace=0.3)["connections"] == [ids[1]]
            frames = [json.loads(f) for f in await recv_until_closed(b, wait=5)]
            assert b.close_code == 1001
            assert [f["e"] for f in frames if isinstance(f, dict)] == ["serverShutdown"]
            await asyncio.sleep(0.5)
            assert isinstance(await recv_json(a), list) and a.close_code is None  # the other one is untouched

    run(scenario())
    assert sim.stats()["server_shutdowns_sent"] == 1


@pytest.mark.parametrize("status", [451, 403, 429])
def test_handshake_fault_refuses_the_next_n_handshakes(sim_factory, status: int) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.2)
    assert sim.fault("handshake", status=status, count=2) == {"applied": "handshake", "status": status, "count": 2}

    async def scenario() -> list:
        refused = []
        for _ in range(2):
            with pytest.raises(websockets.InvalidStatus) as info:
                await websockets.connect(sim.ws_url + "/ws/!miniTicker@arr")
            refused.append(info.value.response)
        async with websockets.connect(sim.ws_url + "/ws/!miniTicker@arr") as ws:  # the third goes through
            assert isinstance(await recv_json(ws), list)
        return refused

    responses = run(scenario())
    assert [r.status_code for r in responses] == [status, status]
    body = responses[0].body
    if status == 451:
        assert "restricted location" in json.loads(body)["msg"]
    elif status == 403:
        assert responses[0].headers["Content-Type"].startswith("text/html") and b"403 ERROR" in body
    else:
        assert json.loads(body)["code"] == -1003 and int(responses[0].headers["Retry-After"]) >= 1
    stats = sim.stats()
    assert stats["handshakes_refused"] == {"total": 2, str(status): 2}
    assert stats["handshakes_refused_by_reason"] == {"fault": 2}
    assert stats["handshake_attempts"] == {"total": 3, "127.0.0.1": 3}
    assert stats["connections_total"] == 1


def test_handshake_and_rest_fault_validation(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=5)
    assert sim.request("/_sim/fault", {"type": "handshake", "status": 500}, method="POST")[0] == 400
    assert sim.request("/_sim/fault", {"type": "rest", "status": 404}, method="POST")[0] == 400


def test_server_shutdown_and_handshake_faults_from_the_command_line(sim_factory) -> None:
    sim = sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.2,
                      fault=["handshake:status=451,count=1", "server_shutdown:grace=0.5,at=2"])

    async def scenario() -> tuple[list, int | None]:
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets.connect(sim.ws_url + "/ws/!miniTicker@arr")
        assert info.value.response.status_code == 451
        async with websockets.connect(sim.ws_url + "/ws/!miniTicker@arr") as ws:
            frames = [json.loads(f) for f in await recv_until_closed(ws, wait=10)]
            return frames, ws.close_code

    frames, code = run(scenario())
    assert code == 1001 and [f["e"] for f in frames if isinstance(f, dict)] == ["serverShutdown"]
