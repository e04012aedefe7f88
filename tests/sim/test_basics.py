"""The simulator's streams and REST answers, checked with a plain websockets client and urllib."""

from __future__ import annotations

import asyncio
import json

import websockets

from tests.sim_fixture import SimProcess


async def recv_json(ws: websockets.ClientConnection) -> object:
    async with asyncio.timeout(5):
        return json.loads(await ws.recv())


def test_prints_urls_and_serves_mini_ticker_array(sim: SimProcess) -> None:
    assert sim.ws_url.startswith("ws://127.0.0.1:")
    assert sim.http_url.startswith("http://127.0.0.1:")

    async def scenario() -> list:
        async with websockets.connect(sim.ws_url + "/ws/!miniTicker@arr") as ws:
            return await recv_json(ws)

    frame = asyncio.run(scenario())
    assert isinstance(frame, list) and frame
    first = frame[0]
    assert list(first) == ["e", "E", "s", "c", "o", "h", "l", "v", "q"]
    assert first["e"] == "24hrMiniTicker"
    assert isinstance(first["E"], int)
    assert all(isinstance(first[k], str) for k in "cohlvq")
