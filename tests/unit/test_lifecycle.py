"""The connection state machine (ingest.binance.lifecycle): the diagram's transitions only, CLOSED final."""

from __future__ import annotations

import asyncio

import pytest

from ingest.backoff import Backoff
from ingest.binance.control import ControlChannel
from ingest.binance.lifecycle import Connection, ConnState, Shard


def connection() -> Connection:
    shard = Shard(index=0, streams=["btcusdt@ticker"], backoff=Backoff(0.1, 1.0, slow_s=1.0))
    return Connection(id="ws0-1", shard=shard, control=ControlChannel("ws0-1", iter(range(1, 10))), streams=[])


def test_states_follow_the_diagram_and_closed_is_final():
    async def scenario() -> None:
        conn = connection()
        assert conn.state is ConnState.CONNECTING
        with pytest.raises(RuntimeError, match="connecting -> delivering"):
            conn.advance(ConnState.DELIVERING)  # no data before the socket is open
        conn.advance(ConnState.SUBSCRIBING)
        conn.subscribed()
        assert conn.state is ConnState.WAITING  # subscribed, no data yet: not counted as connected
        conn.advance(ConnState.DELIVERING)
        with pytest.raises(RuntimeError):
            conn.advance(ConnState.WAITING)
        assert conn.advance(ConnState.CLOSED)
        assert not conn.advance(ConnState.DELIVERING) and conn.state is ConnState.CLOSED

        early = connection()  # data arrived while the rest of the streams were being subscribed
        early.advance(ConnState.SUBSCRIBING)
        early.first_data.set()
        early.subscribed()
        assert early.state is ConnState.DELIVERING

    asyncio.run(scenario())


def test_closing_fails_waiting_control_requests_at_once():
    async def scenario() -> None:
        conn = connection()

        class Socket:
            async def send(self, text: str) -> None:
                conn.control.close("stale")  # the connection dies while the request waits for its answer

        with pytest.raises(Exception, match=r"connection closed \(stale\)"):
            await asyncio.wait_for(conn.control.request(Socket(), "SUBSCRIBE", ["ethusdt@ticker"]), 2.0)

    asyncio.run(scenario())
